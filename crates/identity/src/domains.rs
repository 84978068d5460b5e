//! Domains: containers of projects, users and groups.

use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind};
use oxistack_store::identity::{DomainRec, ListFilter};
use serde_json::{json, Value};

use crate::{new_id, policy, schema, Identity};

const KNOWN: &[&str] = &[
    "id",
    "name",
    "description",
    "enabled",
    "tags",
    "links",
    "options",
];

pub fn missing(id: &str) -> AppError {
    AppError::not_found(format!("Could not find domain: {id}."))
}

fn duplicate(name: &str) -> AppError {
    AppError::conflict(format!(
        "Conflict occurred attempting to store domain - Duplicate entry found with name {name}."
    ))
}

impl Identity {
    pub async fn list_domains(
        &self,
        ctx: &AuthContext,
        filter: &ListFilter,
    ) -> AppResult<Vec<DomainRec>> {
        policy::admin(ctx, "list_domains")?;
        self.store.domain_list(filter).await
    }

    /// Admins, and users of the domain (their own or their project's).
    pub async fn get_domain(&self, ctx: &AuthContext, id: &str) -> AppResult<DomainRec> {
        let own = ctx.user_domain_id == id
            || ctx.project_domain_id.as_deref() == Some(id)
            || ctx.domain_id.as_deref() == Some(id);
        if !own {
            policy::admin(ctx, "get_domain")?;
        }
        self.store.domain_get(id).await?.ok_or_else(|| missing(id))
    }

    pub async fn create_domain(&self, ctx: &AuthContext, body: &Value) -> AppResult<DomainRec> {
        policy::admin(ctx, "create_domain")?;
        let m = schema::wrapper(body, "domain")?;
        let rec = DomainRec {
            id: schema::opt_str(m, "explicit_domain_id", 64)?.unwrap_or_else(new_id),
            name: schema::name(m, 64)?,
            description: schema::opt_str(m, "description", 65535)?.unwrap_or_default(),
            enabled: schema::opt_bool(m, "enabled")?.unwrap_or(true),
            extra: Value::Object(schema::extras(
                m,
                &[KNOWN, &["explicit_domain_id"]].concat(),
            )),
            tags: schema::opt_tags(m)?.unwrap_or_default(),
        };
        self.store
            .domain_insert(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name),
                _ => e,
            })?;
        Ok(rec)
    }

    pub async fn update_domain(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<DomainRec> {
        policy::admin(ctx, "update_domain")?;
        let m = schema::wrapper(body, "domain")?;
        if m.get("id").is_some_and(|v| v != &json!(id)) {
            return Err(schema::invalid(
                "id",
                "the id of a domain cannot be changed",
            ));
        }
        let mut rec = self
            .store
            .domain_get(id)
            .await?
            .ok_or_else(|| missing(id))?;
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
            .domain_update(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name),
                _ => e,
            })?;
        Ok(rec)
    }

    /// Deletes a disabled domain and everything in it; an enabled domain is
    /// refused (403), as in Keystone.
    pub async fn delete_domain(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_domain")?;
        let rec = self
            .store
            .domain_get(id)
            .await?
            .ok_or_else(|| missing(id))?;
        if rec.enabled {
            return Err(AppError::forbidden(
                "Cannot delete a domain that is enabled, please disable it first.",
            ));
        }
        // Users of the domain lose their tokens with their records.
        for u in self
            .store
            .user_list(&ListFilter {
                domain_id: Some(id.into()),
                ..Default::default()
            })
            .await?
        {
            self.store
                .revoke_user_tokens(&u.id, &oxistack_model::time::now())
                .await?;
        }
        self.store.domain_delete(id).await?;
        tracing::info!(domain_id = %id, "deleted domain");
        Ok(())
    }
}
