//! Who is calling: the identity a validated token carries, and the policy
//! checks built on it. Every app function takes an `AuthContext`; the policy
//! itself is written down in docs/policy.md.

use crate::error::AppError;
use crate::id::{ProjectId, UserId};
use crate::time::Timestamp;

/// The roles OxiStack's default policy knows, in Keystone's implied order
/// (admin implies member implies reader).
pub const ROLE_ADMIN: &str = "admin";
pub const ROLE_MEMBER: &str = "member";
pub const ROLE_READER: &str = "reader";

#[derive(Debug, Clone)]
pub struct AuthContext {
    pub user_id: UserId,
    pub user_name: String,
    pub user_domain_id: String,
    pub user_domain_name: String,
    /// Set for project-scoped tokens.
    pub project_id: Option<ProjectId>,
    pub project_name: Option<String>,
    pub project_domain_id: Option<String>,
    pub project_domain_name: Option<String>,
    /// Set for domain-scoped tokens.
    pub domain_id: Option<String>,
    pub domain_name: Option<String>,
    /// Role names held on the scope (with implied roles expanded).
    pub roles: Vec<String>,
    /// Role IDs matching `roles`, position by position.
    pub role_ids: Vec<String>,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
    pub audit_id: String,
    pub methods: Vec<String>,
}

/// Which rows a query may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every project (cloud admin).
    All,
    Project(ProjectId),
}

impl Scope {
    /// The project filter as a bind value: `None` means every project.
    pub fn project(&self) -> Option<String> {
        match self {
            Scope::All => None,
            Scope::Project(p) => Some(p.to_string()),
        }
    }
}

impl AuthContext {
    /// The context a workflow acts in on behalf of a resource's owner (e.g.
    /// the boot saga allocating a server's ports): the owner's project and
    /// user, with the member role. The API already checked the caller.
    pub fn acting_for(project_id: ProjectId, user_id: UserId) -> AuthContext {
        let now = crate::time::now();
        AuthContext {
            user_id,
            user_name: String::new(),
            user_domain_id: crate::id::DEFAULT_DOMAIN.into(),
            user_domain_name: "Default".into(),
            project_id: Some(project_id),
            project_name: None,
            project_domain_id: Some(crate::id::DEFAULT_DOMAIN.into()),
            project_domain_name: Some("Default".into()),
            domain_id: None,
            domain_name: None,
            roles: vec![ROLE_MEMBER.into(), ROLE_READER.into()],
            role_ids: vec![],
            issued_at: now,
            expires_at: now,
            audit_id: String::new(),
            methods: vec![],
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The cloud admin: `admin` role on a project or domain scope, as the
    /// OpenStack default policies ("role:admin") treat it.
    pub fn is_admin(&self) -> bool {
        self.has_role(ROLE_ADMIN)
    }

    pub fn require_admin(&self) -> Result<(), AppError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "Policy doesn't allow this operation to be performed.",
            ))
        }
    }

    /// Members and admins may change resources; readers may only look.
    pub fn require_member(&self) -> Result<(), AppError> {
        if self.is_admin() || self.has_role(ROLE_MEMBER) {
            Ok(())
        } else {
            Err(AppError::forbidden(
                "Policy doesn't allow this operation to be performed.",
            ))
        }
    }

    /// The project a tenant resource is created in.
    pub fn project(&self) -> Result<ProjectId, AppError> {
        self.project_id
            .ok_or_else(|| AppError::forbidden("This operation requires a project-scoped token."))
    }

    /// The scope of an ordinary tenant query: the caller's own project.
    pub fn own_scope(&self) -> Result<Scope, AppError> {
        Ok(Scope::Project(self.project()?))
    }

    /// The scope of a listing that admins may widen with `all_tenants`.
    pub fn list_scope(&self, all_tenants: bool) -> Result<Scope, AppError> {
        if all_tenants && self.is_admin() {
            Ok(Scope::All)
        } else {
            self.own_scope()
        }
    }

    /// The scope of a single-resource lookup: admins see every project's
    /// resources (as Nova's and Glance's default policies allow), others only
    /// their own.
    pub fn lookup_scope(&self) -> Result<Scope, AppError> {
        if self.is_admin() {
            Ok(Scope::All)
        } else {
            self.own_scope()
        }
    }
}
