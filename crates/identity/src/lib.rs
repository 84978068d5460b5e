//! Keystone: the identity service. Domains, projects, users, groups, roles and
//! role assignments; password authentication; signed, expiring, revocable
//! tokens (docs/design/0003-tokens.md); the service catalog. The policy is
//! written down in docs/policy.md and enforced in `policy`.
//!
//! The first start runs [`Identity::bootstrap`], which creates what
//! `keystone-manage bootstrap` creates; later starts find it and change
//! nothing.

pub mod assignments;
pub mod auth;
pub mod catalog;
pub mod domains;
pub mod groups;
pub mod password;
pub mod policy;
pub mod projects;
pub mod roles;
pub mod schema;
pub mod token;
pub mod users;

use std::sync::Arc;

use oxistack_model::config::Settings;
use oxistack_model::{AppResult, DEFAULT_DOMAIN};
use oxistack_store::identity::{AssignmentRec, DomainRec, ProjectRec, RoleRec, UserRec};
use oxistack_store::Store;
use serde_json::json;

pub use auth::{CatalogEntry, IssuedToken};
pub use oxistack_store::identity as records;

/// A catalog entry served by this cloud: service type, name, URL path.
#[derive(Debug, Clone)]
pub struct CatalogService {
    pub service_type: String,
    pub name: String,
    pub path: String,
}

pub struct Identity {
    pub store: Store,
    pub settings: Arc<Settings>,
    pub catalog: Vec<CatalogService>,
    /// The token signing key, read from the store once.
    key: tokio::sync::OnceCell<Vec<u8>>,
}

/// What first start created.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub admin_password: String,
    /// False when the admin already existed (password unchanged).
    pub created: bool,
}

/// The roles bootstrap creates, each implying the next.
const BOOTSTRAP_ROLES: [&str; 3] = ["admin", "member", "reader"];

/// Roles Keystone's bootstrap also creates, which clients look up by name
/// (Tempest's dynamic credentials ask for `manager` and `service` users).
/// OxiStack's policy gives them no rights of their own yet, so they imply
/// nothing and nothing implies them.
const OTHER_BOOTSTRAP_ROLES: [&str; 2] = ["manager", "service"];

impl Identity {
    pub fn new(store: Store, settings: Arc<Settings>, catalog: Vec<CatalogService>) -> Identity {
        Identity {
            store,
            settings,
            catalog,
            key: tokio::sync::OnceCell::new(),
        }
    }

    /// Creates the Default domain, admin project and user, and the admin,
    /// member and reader roles (and manager and service), if they do not
    /// exist yet; and publishes the served catalog. Safe to run on every
    /// start and from several
    /// controllers (every step is "create if missing").
    pub async fn bootstrap(&self, admin_password: Option<String>) -> AppResult<Bootstrap> {
        let s = &self.store;
        if s.domain_get(DEFAULT_DOMAIN).await?.is_none() {
            ignore_conflict(
                s.domain_insert(&DomainRec {
                    id: DEFAULT_DOMAIN.into(),
                    name: "Default".into(),
                    description: "The default domain".into(),
                    enabled: true,
                    extra: json!({}),
                    tags: vec![],
                })
                .await,
            )?;
        }
        let mut role_ids = Vec::new();
        for name in BOOTSTRAP_ROLES {
            role_ids.push(self.ensure_role(name).await?);
        }
        for pair in role_ids.windows(2) {
            s.implied_role_add(&pair[0], &pair[1]).await?;
        }
        for name in OTHER_BOOTSTRAP_ROLES {
            self.ensure_role(name).await?;
        }
        let admin_project = self
            .ensure_project("admin", "Bootstrap project for initializing the cloud.")
            .await?;
        self.ensure_project("service", "Project of the cloud's service users.")
            .await?;

        let (admin, created, password) = match s.user_by_name(DEFAULT_DOMAIN, "admin").await? {
            Some(u) => (u, false, admin_password.unwrap_or_default()),
            None => {
                let password = admin_password.unwrap_or_else(password::generate);
                let user = UserRec {
                    id: new_id(),
                    name: "admin".into(),
                    domain_id: DEFAULT_DOMAIN.into(),
                    enabled: true,
                    password_hash: Some(password::hash(&password).await?),
                    default_project_id: None,
                    extra: json!({}),
                    password_changed_at: Some(oxistack_model::time::now()),
                };
                match s.user_insert(&user).await {
                    Ok(()) => (user, true, password),
                    // Another controller created it first: keep its password.
                    Err(e) if e.kind == oxistack_model::ErrorKind::Conflict => {
                        let u = s.user_by_name(DEFAULT_DOMAIN, "admin").await?.ok_or(e)?;
                        (u, false, String::new())
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        for (target_type, target_id) in [
            ("project", admin_project.as_str()),
            ("domain", DEFAULT_DOMAIN),
        ] {
            s.assignment_add(&AssignmentRec {
                actor_type: "user".into(),
                actor_id: admin.id.clone(),
                target_type: target_type.into(),
                target_id: target_id.into(),
                role_id: role_ids[0].clone(),
            })
            .await?;
        }
        self.publish_catalog().await?;
        if created {
            tracing::info!(user_id = %admin.id, "bootstrap created the admin user");
        }
        Ok(Bootstrap {
            admin_password: password,
            created,
        })
    }

    async fn ensure_role(&self, name: &str) -> AppResult<String> {
        if let Some(r) = self.store.role_list(Some(name)).await?.into_iter().next() {
            return Ok(r.id);
        }
        let rec = RoleRec {
            id: new_id(),
            name: name.into(),
            description: String::new(),
            extra: json!({}),
        };
        ignore_conflict(self.store.role_insert(&rec).await)?;
        let r = self.store.role_list(Some(name)).await?.into_iter().next();
        Ok(r.map(|r| r.id).unwrap_or(rec.id))
    }

    async fn ensure_project(&self, name: &str, description: &str) -> AppResult<String> {
        if let Some(p) = self.store.project_by_name(DEFAULT_DOMAIN, name).await? {
            return Ok(p.id);
        }
        let rec = ProjectRec {
            id: new_id(),
            name: name.into(),
            domain_id: DEFAULT_DOMAIN.into(),
            parent_id: Some(DEFAULT_DOMAIN.into()),
            description: description.into(),
            enabled: true,
            extra: json!({}),
            tags: vec![],
        };
        ignore_conflict(self.store.project_insert(&rec).await)?;
        let p = self.store.project_by_name(DEFAULT_DOMAIN, name).await?;
        Ok(p.map(|p| p.id).unwrap_or(rec.id))
    }

    /// Whether a project exists (other services check project ids given to
    /// them, e.g. quota and flavor access calls).
    pub async fn project_exists(&self, id: &oxistack_model::ProjectId) -> AppResult<bool> {
        Ok(self.store.project_get(&id.to_string()).await?.is_some())
    }
}

/// A new Keystone id: 32 hex digits.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// "Create if missing" steps lose races to other controllers harmlessly.
fn ignore_conflict(r: AppResult<()>) -> AppResult<()> {
    match r {
        Err(e) if e.kind == oxistack_model::ErrorKind::Conflict => Ok(()),
        other => other,
    }
}
