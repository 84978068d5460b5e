//! Authentication and tokens: `POST /v3/auth/tokens` (password and token
//! methods), validation on every request, revocation, and what a token may
//! see (`/v3/auth/projects`, `/v3/auth/domains`, `/v3/auth/catalog`).
//!
//! Validation re-reads the user, the scope and the role assignments on each
//! call (a handful of indexed queries, no password hashing), so disabling a
//! user or project, or removing a role, takes effect on the next request.

use std::collections::{BTreeMap, BTreeSet};

use oxistack_model::time::now;
use oxistack_model::{AppError, AppResult, AuthContext, ErrorKind, ProjectId, UserId};
use oxistack_store::identity::{DomainRec, EndpointRec, ProjectRec, UserRec};
use serde_json::{Map, Value};

use crate::token::{self, TokenPayload};
use crate::{password, policy, schema, Identity};

const KEY_SECRET: &str = "identity.token_signing_key";

/// A token just issued or validated, with what Keystone's token body shows.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub token: String,
    pub ctx: AuthContext,
    pub audit_ids: Vec<String>,
    /// A system-scoped token (`"system": {"all": true}` in its body).
    pub system: bool,
    /// Set for scoped tokens.
    pub catalog: Option<Vec<CatalogEntry>>,
}

/// One service of the catalog, with its enabled endpoints.
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    pub id: String,
    pub service_type: String,
    pub name: String,
    pub endpoints: Vec<EndpointRec>,
}

pub fn unauthorized() -> AppError {
    AppError::unauthenticated("The request you have made requires authentication.")
}

/// The scope a token request asks for.
enum ScopeReq {
    /// No scope given: the user's default project if it has a role there.
    Default,
    Unscoped,
    Project(String),
    Domain(String),
    /// The whole deployment: roles granted on the system.
    System,
}

/// The `target_id` of role assignments on the system, as Keystone stores
/// them; project and domain ids are hex, so it cannot collide.
pub const SYSTEM_TARGET: &str = "system";

impl Identity {
    /// The signing key, created on first use and shared through the store.
    async fn key(&self) -> AppResult<&[u8]> {
        self.key
            .get_or_try_init(|| async {
                let fresh = hex_encode(&rand::random::<[u8; 32]>());
                let stored = self.store.secret_get_or_create(KEY_SECRET, &fresh).await?;
                Ok::<_, AppError>(stored.into_bytes())
            })
            .await
            .map(|k| k.as_slice())
    }

    /// `POST /v3/auth/tokens`: `body` is the whole request body.
    pub async fn authenticate(&self, body: &Value) -> AppResult<IssuedToken> {
        let auth = schema::wrapper(body, "auth")?;
        let identity = match auth.get("identity") {
            Some(Value::Object(m)) => m,
            _ => return Err(AppError::bad_request("'identity' is a required property")),
        };
        let methods: Vec<String> = match identity.get("methods") {
            Some(Value::Array(ms)) if !ms.is_empty() => ms
                .iter()
                .filter_map(|m| m.as_str().map(String::from))
                .collect(),
            _ => {
                return Err(AppError::bad_request(
                    "Invalid input for field 'identity/methods': a non-empty list is required",
                ))
            }
        };
        let scope = self.parse_scope(auth.get("scope")).await?;
        let now = now();
        let (user, methods, expires_at, parent_audit) = if methods.iter().any(|m| m == "password") {
            let pw = match identity.get("password") {
                Some(Value::Object(m)) => m,
                _ => return Err(AppError::bad_request("'password' is a required property")),
            };
            let user = self.password_user(pw).await?;
            (user, vec!["password".to_string()], None, None)
        } else if methods.iter().any(|m| m == "token") {
            let id = identity
                .get("token")
                .and_then(|t| t.get("id"))
                .and_then(Value::as_str)
                .ok_or_else(|| AppError::bad_request("'id' is a required property"))?;
            let (payload, _) = self.resolve(id).await?;
            let user = self
                .store
                .user_get(&payload.u)
                .await?
                .ok_or_else(unauthorized)?;
            let mut ms = vec!["token".to_string()];
            ms.extend(payload.m.iter().filter(|m| *m != "token").cloned());
            // A rescoped token lives no longer than the one it came from.
            (
                user,
                ms,
                Some(payload.expires_at()),
                payload.a.first().cloned(),
            )
        } else {
            return Err(AppError::unauthenticated(
                "Attempted to authenticate with an unsupported method.",
            ));
        };
        let system = matches!(scope, ScopeReq::System);
        let (project, domain) = match scope {
            ScopeReq::Unscoped | ScopeReq::System => (None, None),
            ScopeReq::Project(p) => (Some(p), None),
            ScopeReq::Domain(d) => (None, Some(d)),
            ScopeReq::Default => match &user.default_project_id {
                Some(p) if !self.store.user_role_ids_on(&user.id, p).await?.is_empty() => {
                    (Some(p.clone()), None)
                }
                _ => (None, None),
            },
        };
        let expires_at = expires_at
            .unwrap_or(now + chrono::Duration::seconds(self.settings.token_lifetime_secs));
        let mut audit = vec![token::new_audit_id()];
        audit.extend(parent_audit);
        let payload = TokenPayload {
            u: user.id.clone(),
            m: methods,
            p: project,
            d: domain,
            s: system,
            i: now.timestamp_micros(),
            e: expires_at.timestamp_micros(),
            a: audit,
        };
        let token = token::sign(self.key().await?, &payload)?;
        // Resolving the fresh token checks the scope exactly as later
        // validations will (enabled project, a role on it).
        let (_, ctx) = self.resolve(&token).await?;
        tracing::info!(user_id = %user.id, audit_id = %payload.a[0], "issued token");
        self.issued(token, ctx, payload.a, system).await
    }

    /// Password authentication by user and domain name, optionally scoped to
    /// a project given as (project name, project domain name); for tests
    /// and tools of other crates.
    pub async fn authenticate_password(
        &self,
        user_name: &str,
        user_domain: &str,
        password: &str,
        project: Option<(&str, &str)>,
    ) -> AppResult<(String, AuthContext)> {
        let mut auth = serde_json::json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": user_name, "domain": {"name": user_domain}, "password": password}}}}});
        auth["auth"]["scope"] = match project {
            Some((name, domain)) => {
                serde_json::json!({"project": {"name": name, "domain": {"name": domain}}})
            }
            None => Value::String("unscoped".into()),
        };
        let t = self.authenticate(&auth).await?;
        Ok((t.token, t.ctx))
    }

    /// Validates a token and returns the caller it names.
    pub async fn validate_token(&self, token: &str) -> AppResult<AuthContext> {
        self.resolve(token).await.map(|(_, ctx)| ctx)
    }

    /// `GET /v3/auth/tokens`: the subject token's details, for an admin or
    /// the token's own user. A bad subject token is a 404, as in Keystone.
    pub async fn token_details(
        &self,
        caller: &AuthContext,
        subject: &str,
        with_catalog: bool,
    ) -> AppResult<IssuedToken> {
        let (payload, ctx) = self.resolve(subject).await.map_err(|e| match e.kind {
            ErrorKind::Unauthenticated => {
                AppError::not_found(format!("Could not find token: {subject}."))
            }
            _ => e,
        })?;
        policy::admin_or_self(caller, "validate_token", &ctx.user_id.to_string())?;
        let mut t = self
            .issued(subject.to_string(), ctx, payload.a, payload.s)
            .await?;
        if !with_catalog {
            t.catalog = None;
        }
        Ok(t)
    }

    /// `DELETE /v3/auth/tokens`: revokes the subject token (by audit id).
    pub async fn revoke_token(&self, caller: &AuthContext, subject: &str) -> AppResult<()> {
        let (payload, ctx) = self.resolve(subject).await.map_err(|e| match e.kind {
            ErrorKind::Unauthenticated => {
                AppError::not_found(format!("Could not find token: {subject}."))
            }
            _ => e,
        })?;
        policy::admin_or_self(caller, "revoke_token", &ctx.user_id.to_string())?;
        self.store.revoke_audit_id(&payload.a[0]).await?;
        tracing::info!(user_id = %ctx.user_id, audit_id = %payload.a[0], "revoked token");
        Ok(())
    }

    /// `GET /v3/auth/projects`: enabled projects where the caller has a role.
    pub async fn auth_projects(&self, caller: &AuthContext) -> AppResult<Vec<ProjectRec>> {
        self.user_projects(&caller.user_id.to_string()).await
    }

    /// `GET /v3/auth/domains`: enabled domains where the caller has a role.
    pub async fn auth_domains(&self, caller: &AuthContext) -> AppResult<Vec<DomainRec>> {
        let mut out = Vec::new();
        for id in self
            .store
            .user_target_ids(&caller.user_id.to_string(), "domain")
            .await?
        {
            if let Some(d) = self.store.domain_get(&id).await?.filter(|d| d.enabled) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// `GET /v3/auth/catalog`: the catalog, for a scoped token.
    pub async fn auth_catalog(&self, caller: &AuthContext) -> AppResult<Vec<CatalogEntry>> {
        // Scoped tokens (project, domain or system) carry roles; unscoped ones none.
        if caller.project_id.is_none() && caller.domain_id.is_none() && caller.roles.is_empty() {
            return Err(AppError::forbidden(
                "A scoped token is required to list the catalog.",
            ));
        }
        self.served_catalog().await
    }

    /// Projects where `user_id` has a role, directly or through a group.
    pub(crate) async fn user_projects(&self, user_id: &str) -> AppResult<Vec<ProjectRec>> {
        let mut out = Vec::new();
        for id in self.store.user_target_ids(user_id, "project").await? {
            if let Some(p) = self.store.project_get(&id).await?.filter(|p| p.enabled) {
                out.push(p);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn issued(
        &self,
        token: String,
        ctx: AuthContext,
        audit_ids: Vec<String>,
        system: bool,
    ) -> AppResult<IssuedToken> {
        let catalog = if system || ctx.project_id.is_some() || ctx.domain_id.is_some() {
            Some(self.served_catalog().await?)
        } else {
            None
        };
        Ok(IssuedToken {
            token,
            ctx,
            audit_ids,
            system,
            catalog,
        })
    }

    /// The catalog as stored: enabled services with their enabled endpoints.
    pub async fn served_catalog(&self) -> AppResult<Vec<CatalogEntry>> {
        let endpoints = self.store.endpoint_list(None, None).await?;
        Ok(self
            .store
            .service_list(None)
            .await?
            .into_iter()
            .filter(|s| s.enabled)
            .map(|s| CatalogEntry {
                endpoints: endpoints
                    .iter()
                    .filter(|e| e.enabled && e.service_id == s.id)
                    .cloned()
                    .collect(),
                id: s.id,
                service_type: s.service_type,
                name: s.name,
            })
            .collect())
    }

    /// The user a password request names, if the password matches and the
    /// user and its domain are enabled. Every failure is the same 401.
    async fn password_user(&self, pw: &Map<String, Value>) -> AppResult<UserRec> {
        let u = match pw.get("user") {
            Some(Value::Object(m)) => m,
            _ => return Err(AppError::bad_request("'user' is a required property")),
        };
        let secret = match u.get("password") {
            Some(Value::String(s)) => s.clone(),
            _ => {
                return Err(AppError::bad_request(
                    "Invalid input for field 'password': a string is required",
                ))
            }
        };
        let user = if let Some(id) = u.get("id").and_then(Value::as_str) {
            self.store.user_get(id).await?
        } else {
            let name = u
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| AppError::bad_request("Expecting to find id or name in user."))?;
            let domain = match u.get("domain") {
                Some(Value::Object(d)) => self.find_domain(d).await?,
                _ => return Err(AppError::bad_request("Expecting to find domain in user.")),
            };
            match domain {
                Some(d) => self.store.user_by_name(&d.id, name).await?,
                None => None,
            }
        };
        let ok = password::verify(
            &secret,
            user.as_ref().and_then(|u| u.password_hash.as_deref()),
        )
        .await?;
        match user {
            Some(user) if ok && user.enabled => {
                let domain_enabled = self
                    .store
                    .domain_get(&user.domain_id)
                    .await?
                    .is_some_and(|d| d.enabled);
                if domain_enabled {
                    Ok(user)
                } else {
                    Err(unauthorized())
                }
            }
            _ => {
                tracing::info!("password authentication failed");
                Err(unauthorized())
            }
        }
    }

    /// A domain given as `{"id": …}` or `{"name": …}`.
    async fn find_domain(&self, d: &Map<String, Value>) -> AppResult<Option<DomainRec>> {
        if let Some(id) = d.get("id").and_then(Value::as_str) {
            self.store.domain_get(id).await
        } else if let Some(name) = d.get("name").and_then(Value::as_str) {
            self.store.domain_by_name(name).await
        } else {
            Err(AppError::bad_request(
                "Expecting to find id or name in domain.",
            ))
        }
    }

    async fn parse_scope(&self, scope: Option<&Value>) -> AppResult<ScopeReq> {
        let scope = match scope {
            None | Some(Value::Null) => return Ok(ScopeReq::Default),
            Some(Value::String(s)) if s == "unscoped" => return Ok(ScopeReq::Unscoped),
            Some(Value::Object(m)) => m,
            Some(other) => return Err(schema::invalid("scope", format!("{other} is not valid"))),
        };
        if let Some(Value::Object(p)) = scope.get("project") {
            if let Some(id) = p.get("id").and_then(Value::as_str) {
                return Ok(ScopeReq::Project(id.to_string()));
            }
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| AppError::bad_request("Expecting to find id or name in project."))?;
            let domain = match p.get("domain") {
                Some(Value::Object(d)) => self.find_domain(d).await?.ok_or_else(unauthorized)?,
                _ => {
                    return Err(AppError::bad_request(
                        "Expecting to find domain in project.",
                    ))
                }
            };
            let project = self
                .store
                .project_by_name(&domain.id, name)
                .await?
                .ok_or_else(unauthorized)?;
            return Ok(ScopeReq::Project(project.id));
        }
        if let Some(Value::Object(d)) = scope.get("domain") {
            let domain = self.find_domain(d).await?.ok_or_else(unauthorized)?;
            return Ok(ScopeReq::Domain(domain.id));
        }
        if let Some(system) = scope.get("system") {
            // Keystone knows one system, `all`.
            if system.get("all").and_then(Value::as_bool) == Some(true) {
                return Ok(ScopeReq::System);
            }
            return Err(schema::invalid("scope", "system must be {\"all\": true}"));
        }
        Err(schema::invalid(
            "scope",
            "a project or a domain is required",
        ))
    }

    /// Opens, checks and resolves a token: signature, expiry, revocation,
    /// user and scope enabled, roles held on the scope.
    async fn resolve(&self, token: &str) -> AppResult<(TokenPayload, AuthContext)> {
        let payload = token::open(self.key().await?, token)?;
        let issued_at = payload.issued_at();
        let expires_at = payload.expires_at();
        if expires_at <= now() || payload.a.is_empty() {
            return Err(unauthorized());
        }
        let user = self
            .store
            .user_get(&payload.u)
            .await?
            .filter(|u| u.enabled)
            .ok_or_else(unauthorized)?;
        let user_domain = self
            .store
            .domain_get(&user.domain_id)
            .await?
            .filter(|d| d.enabled)
            .ok_or_else(unauthorized)?;
        if self
            .store
            .token_revoked(&payload.a, &user.id, &issued_at)
            .await?
        {
            return Err(unauthorized());
        }
        let mut ctx = AuthContext {
            user_id: user
                .id
                .parse::<UserId>()
                .map_err(|_| AppError::internal(format!("bad user id {}", user.id)))?,
            user_name: user.name.clone(),
            user_domain_id: user_domain.id.clone(),
            user_domain_name: user_domain.name.clone(),
            project_id: None,
            project_name: None,
            project_domain_id: None,
            project_domain_name: None,
            domain_id: None,
            domain_name: None,
            roles: vec![],
            role_ids: vec![],
            issued_at,
            expires_at,
            audit_id: payload.a[0].clone(),
            methods: payload.m.clone(),
        };
        let target = if let Some(pid) = &payload.p {
            let project = self
                .store
                .project_get(pid)
                .await?
                .filter(|p| p.enabled)
                .ok_or_else(unauthorized)?;
            let domain = self
                .store
                .domain_get(&project.domain_id)
                .await?
                .filter(|d| d.enabled)
                .ok_or_else(unauthorized)?;
            ctx.project_id = Some(pid.parse::<ProjectId>().map_err(|_| unauthorized())?);
            ctx.project_name = Some(project.name);
            ctx.project_domain_id = Some(domain.id);
            ctx.project_domain_name = Some(domain.name);
            Some(project.id)
        } else if let Some(did) = &payload.d {
            let domain = self
                .store
                .domain_get(did)
                .await?
                .filter(|d| d.enabled)
                .ok_or_else(unauthorized)?;
            ctx.domain_id = Some(domain.id.clone());
            ctx.domain_name = Some(domain.name);
            Some(domain.id)
        } else if payload.s {
            Some(SYSTEM_TARGET.to_string())
        } else {
            None
        };
        if let Some(target) = target {
            let direct = self.store.user_role_ids_on(&user.id, &target).await?;
            if direct.is_empty() {
                return Err(unauthorized());
            }
            let (ids, names) = self.expand_roles(direct).await?;
            ctx.role_ids = ids;
            ctx.roles = names;
        }
        Ok((payload, ctx))
    }

    /// Role ids with their implied roles added (transitively), as parallel
    /// (ids, names) lists sorted by name.
    pub(crate) async fn expand_roles(
        &self,
        direct: Vec<String>,
    ) -> AppResult<(Vec<String>, Vec<String>)> {
        let rules = self.store.implied_role_list().await?;
        let all = implied_closure(direct, &rules);
        let names: BTreeMap<String, String> = self
            .store
            .role_list(None)
            .await?
            .into_iter()
            .map(|r| (r.id, r.name))
            .collect();
        let mut pairs: Vec<(String, String)> = all
            .into_iter()
            .filter_map(|id| names.get(&id).map(|n| (n.clone(), id)))
            .collect();
        pairs.sort();
        Ok(pairs.into_iter().map(|(n, id)| (id, n)).unzip())
    }
}

/// `roles` and every role they imply, following the rules transitively
/// (cycles are harmless: each role is visited once).
pub fn implied_closure(roles: Vec<String>, rules: &[(String, String)]) -> BTreeSet<String> {
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo = roles;
    while let Some(r) = todo.pop() {
        if seen.insert(r.clone()) {
            todo.extend(
                rules
                    .iter()
                    .filter(|(p, _)| *p == r)
                    .map(|(_, i)| i.clone()),
            );
        }
    }
    seen
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implied_roles_expand_transitively_and_survive_cycles() {
        let rules = vec![
            ("admin".to_string(), "member".to_string()),
            ("member".to_string(), "reader".to_string()),
            ("reader".to_string(), "admin".to_string()),
        ];
        let all = implied_closure(vec!["member".into()], &rules);
        assert_eq!(all.len(), 3);
        let none = implied_closure(vec!["other".into()], &rules);
        assert_eq!(
            none.into_iter().collect::<Vec<_>>(),
            vec!["other".to_string()]
        );
    }
}
