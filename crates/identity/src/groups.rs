//! Groups of users; a role granted to a group is held by its members.

use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, DEFAULT_DOMAIN};
use oxistack_store::identity::{GroupRec, ListFilter, UserRec};
use serde_json::Value;

use crate::{new_id, policy, schema, users, Identity};

const KNOWN: &[&str] = &["id", "name", "domain_id", "description", "links"];

pub fn missing(id: &str) -> AppError {
    AppError::not_found(format!("Could not find group: {id}."))
}

fn duplicate(name: &str, domain_id: &str) -> AppError {
    AppError::conflict(format!(
        "Conflict occurred attempting to store group - Duplicate entry found with name {name} at domain ID {domain_id}."
    ))
}

impl Identity {
    pub async fn list_groups(
        &self,
        ctx: &AuthContext,
        filter: &ListFilter,
    ) -> AppResult<Vec<GroupRec>> {
        policy::admin(ctx, "list_groups")?;
        self.store.group_list(filter).await
    }

    pub async fn get_group(&self, ctx: &AuthContext, id: &str) -> AppResult<GroupRec> {
        policy::admin(ctx, "get_group")?;
        self.store.group_get(id).await?.ok_or_else(|| missing(id))
    }

    pub async fn create_group(&self, ctx: &AuthContext, body: &Value) -> AppResult<GroupRec> {
        policy::admin(ctx, "create_group")?;
        let m = schema::wrapper(body, "group")?;
        let domain_id = schema::opt_str(m, "domain_id", 64)?
            .or_else(|| ctx.domain_id.clone())
            .or_else(|| ctx.project_domain_id.clone())
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_string());
        if self.store.domain_get(&domain_id).await?.is_none() {
            return Err(AppError::not_found(format!(
                "Could not find domain: {domain_id}."
            )));
        }
        let rec = GroupRec {
            id: new_id(),
            name: schema::name(m, 64)?,
            domain_id,
            description: schema::opt_str(m, "description", 65535)?.unwrap_or_default(),
            extra: Value::Object(schema::extras(m, KNOWN)),
        };
        self.store
            .group_insert(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name, &rec.domain_id),
                _ => e,
            })?;
        Ok(rec)
    }

    pub async fn update_group(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<GroupRec> {
        policy::admin(ctx, "update_group")?;
        let m = schema::wrapper(body, "group")?;
        let mut rec = self.store.group_get(id).await?.ok_or_else(|| missing(id))?;
        if m.get("domain_id")
            .is_some_and(|v| v.as_str() != Some(rec.domain_id.as_str()))
        {
            return Err(schema::invalid(
                "domain_id",
                "the domain_id of a group cannot be changed",
            ));
        }
        if let Some(n) = schema::opt_name(m, 64)? {
            rec.name = n;
        }
        if let Some(d) = schema::opt_nullable_str(m, "description", 65535)? {
            rec.description = d.unwrap_or_default();
        }
        rec.extra = schema::merge_extra(&rec.extra, schema::extras(m, KNOWN));
        self.store
            .group_update(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name, &rec.domain_id),
                _ => e,
            })?;
        Ok(rec)
    }

    pub async fn delete_group(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_group")?;
        self.store.group_get(id).await?.ok_or_else(|| missing(id))?;
        self.store.group_delete(id).await
    }

    pub async fn list_group_users(
        &self,
        ctx: &AuthContext,
        group_id: &str,
    ) -> AppResult<Vec<UserRec>> {
        policy::admin(ctx, "list_users_in_group")?;
        self.store
            .group_get(group_id)
            .await?
            .ok_or_else(|| missing(group_id))?;
        self.store.group_users(group_id).await
    }

    async fn group_and_user(&self, group_id: &str, user_id: &str) -> AppResult<()> {
        self.store
            .group_get(group_id)
            .await?
            .ok_or_else(|| missing(group_id))?;
        self.store
            .user_get(user_id)
            .await?
            .ok_or_else(|| users::missing(user_id))?;
        Ok(())
    }

    pub async fn add_user_to_group(
        &self,
        ctx: &AuthContext,
        group_id: &str,
        user_id: &str,
    ) -> AppResult<()> {
        policy::admin(ctx, "add_user_to_group")?;
        self.group_and_user(group_id, user_id).await?;
        self.store.group_add_user(group_id, user_id).await
    }

    pub async fn check_user_in_group(
        &self,
        ctx: &AuthContext,
        group_id: &str,
        user_id: &str,
    ) -> AppResult<()> {
        policy::admin(ctx, "check_user_in_group")?;
        self.group_and_user(group_id, user_id).await?;
        if self.store.group_has_user(group_id, user_id).await? {
            Ok(())
        } else {
            Err(AppError::not_found(format!(
                "User '{user_id}' not found in group '{group_id}'"
            )))
        }
    }

    /// Removing a member takes away the group's roles from its tokens at
    /// once (roles are resolved at validation).
    pub async fn remove_user_from_group(
        &self,
        ctx: &AuthContext,
        group_id: &str,
        user_id: &str,
    ) -> AppResult<()> {
        policy::admin(ctx, "remove_user_from_group")?;
        self.group_and_user(group_id, user_id).await?;
        if self.store.group_remove_user(group_id, user_id).await? {
            Ok(())
        } else {
            Err(AppError::not_found(format!(
                "User '{user_id}' not found in group '{group_id}'"
            )))
        }
    }
}
