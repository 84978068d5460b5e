//! Global roles and implied-role rules (admin implies member implies reader).

use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind};
use oxistack_store::identity::RoleRec;
use serde_json::Value;

use crate::{new_id, policy, schema, Identity};

const KNOWN: &[&str] = &["id", "name", "domain_id", "description", "links", "options"];

pub fn missing(id: &str) -> AppError {
    AppError::not_found(format!("Could not find role: {id}."))
}

fn duplicate(name: &str) -> AppError {
    AppError::conflict(format!(
        "Conflict occurred attempting to store role - Duplicate entry found with name {name}."
    ))
}

/// One implication rule with both roles.
#[derive(Debug, Clone)]
pub struct RoleInference {
    pub prior: RoleRec,
    pub implied: Vec<RoleRec>,
}

impl Identity {
    pub async fn list_roles(
        &self,
        ctx: &AuthContext,
        name: Option<&str>,
    ) -> AppResult<Vec<RoleRec>> {
        policy::admin(ctx, "list_roles")?;
        self.store.role_list(name).await
    }

    pub async fn get_role(&self, ctx: &AuthContext, id: &str) -> AppResult<RoleRec> {
        policy::admin(ctx, "get_role")?;
        self.store.role_get(id).await?.ok_or_else(|| missing(id))
    }

    pub async fn create_role(&self, ctx: &AuthContext, body: &Value) -> AppResult<RoleRec> {
        policy::admin(ctx, "create_role")?;
        let m = schema::wrapper(body, "role")?;
        if schema::opt_str(m, "domain_id", 64)?.is_some() {
            return Err(AppError::bad_request(
                "Domain-specific roles are not supported.",
            ));
        }
        let rec = RoleRec {
            id: new_id(),
            name: schema::name(m, 255)?,
            description: schema::opt_str(m, "description", 255)?.unwrap_or_default(),
            extra: Value::Object(schema::extras(m, KNOWN)),
        };
        self.store
            .role_insert(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name),
                _ => e,
            })?;
        Ok(rec)
    }

    pub async fn update_role(
        &self,
        ctx: &AuthContext,
        id: &str,
        body: &Value,
    ) -> AppResult<RoleRec> {
        policy::admin(ctx, "update_role")?;
        let m = schema::wrapper(body, "role")?;
        let mut rec = self.store.role_get(id).await?.ok_or_else(|| missing(id))?;
        if let Some(n) = schema::opt_name(m, 255)? {
            rec.name = n;
        }
        if let Some(d) = schema::opt_nullable_str(m, "description", 255)? {
            rec.description = d.unwrap_or_default();
        }
        rec.extra = schema::merge_extra(&rec.extra, schema::extras(m, KNOWN));
        self.store
            .role_update(&rec)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Conflict => duplicate(&rec.name),
                _ => e,
            })?;
        Ok(rec)
    }

    /// Deletes a role with its assignments and implication rules.
    pub async fn delete_role(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        policy::admin(ctx, "delete_role")?;
        self.store.role_get(id).await?.ok_or_else(|| missing(id))?;
        self.store.role_delete(id).await
    }

    async fn role_pair(&self, prior: &str, implied: &str) -> AppResult<(RoleRec, RoleRec)> {
        let p = self
            .store
            .role_get(prior)
            .await?
            .ok_or_else(|| missing(prior))?;
        let i = self
            .store
            .role_get(implied)
            .await?
            .ok_or_else(|| missing(implied))?;
        Ok((p, i))
    }

    pub async fn create_implied_role(
        &self,
        ctx: &AuthContext,
        prior: &str,
        implied: &str,
    ) -> AppResult<(RoleRec, RoleRec)> {
        policy::admin(ctx, "create_implied_role")?;
        let pair = self.role_pair(prior, implied).await?;
        if prior == implied {
            return Err(AppError::forbidden(format!("{prior} cannot imply itself.")));
        }
        let rules = self.store.implied_role_list().await?;
        if crate::auth::implied_closure(vec![implied.to_string()], &rules).contains(prior) {
            return Err(AppError::forbidden(format!(
                "Implying {implied} from {prior} would create a cycle."
            )));
        }
        self.store.implied_role_add(prior, implied).await?;
        Ok(pair)
    }

    pub async fn get_implied_role(
        &self,
        ctx: &AuthContext,
        prior: &str,
        implied: &str,
    ) -> AppResult<(RoleRec, RoleRec)> {
        policy::admin(ctx, "get_implied_role")?;
        let pair = self.role_pair(prior, implied).await?;
        let rules = self.store.implied_role_list().await?;
        if rules.iter().any(|(p, i)| p == prior && i == implied) {
            Ok(pair)
        } else {
            Err(AppError::not_found(format!(
                "{prior} does not imply {implied}."
            )))
        }
    }

    pub async fn delete_implied_role(
        &self,
        ctx: &AuthContext,
        prior: &str,
        implied: &str,
    ) -> AppResult<()> {
        policy::admin(ctx, "delete_implied_role")?;
        self.role_pair(prior, implied).await?;
        if self.store.implied_role_remove(prior, implied).await? {
            Ok(())
        } else {
            Err(AppError::not_found(format!(
                "{prior} does not imply {implied}."
            )))
        }
    }

    /// The implication rules, grouped by prior role; `prior` narrows to one.
    pub async fn list_role_inferences(
        &self,
        ctx: &AuthContext,
        prior: Option<&str>,
    ) -> AppResult<Vec<RoleInference>> {
        policy::admin(ctx, "list_role_inference_rules")?;
        if let Some(p) = prior {
            self.store.role_get(p).await?.ok_or_else(|| missing(p))?;
        }
        let roles = self.store.role_list(None).await?;
        let by_id = |id: &str| roles.iter().find(|r| r.id == id).cloned();
        let mut out: Vec<RoleInference> = Vec::new();
        for (p, i) in self.store.implied_role_list().await? {
            if prior.is_some_and(|x| x != p) {
                continue;
            }
            let (Some(pr), Some(ir)) = (by_id(&p), by_id(&i)) else {
                continue;
            };
            match out.iter_mut().find(|x| x.prior.id == p) {
                Some(x) => x.implied.push(ir),
                None => out.push(RoleInference {
                    prior: pr,
                    implied: vec![ir],
                }),
            }
        }
        if out.is_empty() {
            if let Some(p) = prior.and_then(by_id) {
                out.push(RoleInference {
                    prior: p,
                    implied: vec![],
                });
            }
        }
        Ok(out)
    }
}
