//! Users: passwords (argon2id), enabled flag, default project and the extra
//! attributes Keystone keeps (email, description, …).

use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, DEFAULT_DOMAIN};
use oxistack_store::identity::{GroupRec, ListFilter, UserRec};
use serde_json::{json, Map, Value};

use crate::{auth, new_id, password, policy, schema, Identity};

const KNOWN: &[&str] = &[
    "id",
    "name",
    "domain_id",
    "enabled",
    "password",
    "default_project_id",
    "links",
    "options",
    "password_expires_at",
];

pub fn missing(id: &str) -> AppError {
    AppError::not_found(format!("Could not find user: {id}."))
}

fn duplicate(name: &str, domain_id: &str) -> AppError {
    AppError::conflict(format!(
        "Conflict occurred attempting to store user - Duplicate entry found with name {name} at domain ID {domain_id}."
    ))
}

impl Identity {
    pub async fn list_users(
        &self,
        ctx: &AuthContext,
        filter: &ListFilter,
    ) -> AppResult<Vec<UserRec>> {
        policy::admin(ctx, "list_users")?;
        self.store.user_list(filter).await
    }

    pub async fn get_user(&self, ctx: &AuthContext, id: &str) -> AppResult<UserRec> {
        policy::admin_or_self(ctx, "get_user", id)?;
        self.store.user_get(id).await?.ok_or_else(|| missing(id))
    }

    pub async fn create_user(&self, ctx: &AuthContext, body: &Value) -> AppResult<UserRec> {
        policy::admin(ctx, "create_user")?;
        let m = schema::wrapper(body, "user")?;
        let name = schema::name(m, 255)?;
        let domain_id = match schema::opt_str(m, "domain_id", 64)? {
            Some(d) => d,
            None => ctx
                .domain_id
                .clone()
                .or_else(|| ctx.project_domain_id.clone())
                .unwrap_or_else(|| DEFAULT_DOMAIN.to_string()),
        };
        if self.store.domain_get(&domain_id).await?.is_none() {
            return Err(AppError::not_found(format!(
                "Could not find domain: {domain_id}."
            )));
        }
        let default_project_id = self.checked_default_project(m).await?.flatten();
        let secret = schema::opt_str(m, "password", 4096)?;
        let password_hash = match &secret {
            Some(p) => Some(password::hash(p).await?),
            None => None,
        };
        let rec = UserRec {
            id: new_id(),
            name,
            domain_id,
            enabled: schema::opt_bool(m, "enabled")?.unwrap_or(true),
            password_changed_at: password_hash.as_ref().map(|_| now()),
            password_hash,
            default_project_id,
            extra: Value::Object(schema::extras(m, KNOWN)),
        };
        self.store
            .user_insert(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name, &rec.domain_id),
                _ => e,
            })?;
        tracing::info!(user_id = %rec.id, "created user");
        Ok(rec)
    }

    /// `default_project_id` as given: absent, null, or an existing project.
    async fn checked_default_project(
        &self,
        m: &Map<String, Value>,
    ) -> AppResult<Option<Option<String>>> {
        match schema::opt_nullable_str(m, "default_project_id", 64)? {
            Some(Some(p)) => {
                if self.store.project_get(&p).await?.is_none() {
                    return Err(AppError::bad_request(format!(
                        "Could not find project: {p}."
                    )));
                }
                Ok(Some(Some(p)))
            }
            other => Ok(other),
        }
    }

    /// Updates a user. Disabling it or changing its password revokes every
    /// token it holds.
    pub async fn update_user(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<UserRec> {
        policy::admin(ctx, "update_user")?;
        let m = schema::wrapper(body, "user")?;
        let mut rec = self.store.user_get(id).await?.ok_or_else(|| missing(id))?;
        for (key, current) in [("id", json!(rec.id)), ("domain_id", json!(rec.domain_id))] {
            if m.get(key).is_some_and(|v| v != &current) {
                return Err(schema::invalid(
                    key,
                    format!("the {key} of a user cannot be changed"),
                ));
            }
        }
        let mut revoke = false;
        if let Some(n) = schema::opt_name(m, 255)? {
            rec.name = n;
        }
        if let Some(e) = schema::opt_bool(m, "enabled")? {
            revoke |= rec.enabled && !e;
            rec.enabled = e;
        }
        if let Some(p) = self.checked_default_project(m).await? {
            rec.default_project_id = p;
        }
        if let Some(p) = schema::opt_nullable_str(m, "password", 4096)? {
            rec.password_hash = match p {
                Some(p) => Some(password::hash(&p).await?),
                None => None,
            };
            rec.password_changed_at = Some(now());
            revoke = true;
        }
        rec.extra = schema::merge_extra(&rec.extra, schema::extras(m, KNOWN));
        self.store
            .user_update(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name, &rec.domain_id),
                _ => e,
            })?;
        if revoke {
            self.store.revoke_user_tokens(&rec.id, &now()).await?;
        }
        Ok(rec)
    }

    pub async fn delete_user(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_user")?;
        self.store.user_get(id).await?.ok_or_else(|| missing(id))?;
        self.store.revoke_user_tokens(id, &now()).await?;
        self.store.user_delete(id).await?;
        tracing::info!(user_id = %id, "deleted user");
        Ok(())
    }

    /// `POST /v3/users/{id}/password`: a user changes its own password,
    /// giving the current one. Every token it holds is revoked.
    pub async fn change_password(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<()> {
        // The owner, or an admin (Keystone's admin_or_owner); the original
        // password is required either way.
        if ctx.user_id.to_string() != id {
            policy::admin(ctx, "change_password")?;
        }
        let m = schema::wrapper(body, "user")?;
        let original = schema::opt_str(m, "original_password", 4096)?
            .ok_or_else(|| AppError::bad_request("'original_password' is a required property"))?;
        let new = schema::opt_str(m, "password", 4096)?
            .ok_or_else(|| AppError::bad_request("'password' is a required property"))?;
        let mut rec = self.store.user_get(id).await?.ok_or_else(|| missing(id))?;
        if !password::verify(&original, rec.password_hash.as_deref()).await? {
            return Err(auth::unauthorized());
        }
        rec.password_hash = Some(password::hash(&new).await?);
        rec.password_changed_at = Some(now());
        self.store.user_update(&rec).await?;
        self.store.revoke_user_tokens(id, &now()).await?;
        tracing::info!(user_id = %id, "user changed its password");
        Ok(())
    }

    /// `GET /v3/users/{id}/groups`: admin or the user itself.
    pub async fn list_user_groups(&self, ctx: &AuthContext, id: &str) -> AppResult<Vec<GroupRec>> {
        policy::admin_or_self(ctx, "list_groups_for_user", id)?;
        self.store.user_get(id).await?.ok_or_else(|| missing(id))?;
        self.store.user_groups(id).await
    }
}
