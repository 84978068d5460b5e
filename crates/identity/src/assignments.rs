//! Role assignments: grants of a role to a user or group on a project or
//! domain, and the `/v3/role_assignments` listing (direct or effective).

use oxistack_model::{AppError, AppResult, AuthContext};
use oxistack_store::identity::{AssignmentFilter, AssignmentRec, RoleRec};

use crate::{auth::implied_closure, domains, groups, policy, projects, roles, users, Identity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    User,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Project,
    Domain,
    /// The whole deployment; its one target id is `auth::SYSTEM_TARGET`.
    System,
}

impl Actor {
    pub fn as_str(&self) -> &'static str {
        match self {
            Actor::User => "user",
            Actor::Group => "group",
        }
    }
}

impl Target {
    pub fn as_str(&self) -> &'static str {
        match self {
            Target::Project => "project",
            Target::Domain => "domain",
            Target::System => "system",
        }
    }
}

/// Filters of `GET /v3/role_assignments`.
#[derive(Debug, Clone, Default)]
pub struct AssignmentQuery {
    pub user_id: Option<String>,
    pub group_id: Option<String>,
    pub project_id: Option<String>,
    pub domain_id: Option<String>,
    /// `scope.system=all`: only assignments on the system.
    pub system: bool,
    pub role_id: Option<String>,
    pub effective: bool,
    pub include_names: bool,
}

/// A name and its domain, for `include_names`.
#[derive(Debug, Clone, Default)]
pub struct Named {
    pub name: Option<String>,
    pub domain: Option<(String, String)>,
}

/// One row of the listing. `via_group` and `prior_role` say where an
/// effective assignment came from (Keystone's `membership` and `prior_role`
/// links).
#[derive(Debug, Clone)]
pub struct AssignmentView {
    pub assignment: AssignmentRec,
    pub via_group: Option<String>,
    pub prior_role: Option<String>,
    pub role_name: Option<String>,
    pub actor: Named,
    pub target: Named,
}

impl Identity {
    async fn check_parties(
        &self,
        actor: Actor,
        actor_id: &str,
        target: Target,
        target_id: &str,
        role_id: &str,
    ) -> AppResult<()> {
        match actor {
            Actor::User => self
                .store
                .user_get(actor_id)
                .await?
                .map(|_| ())
                .ok_or_else(|| users::missing(actor_id))?,
            Actor::Group => self
                .store
                .group_get(actor_id)
                .await?
                .map(|_| ())
                .ok_or_else(|| groups::missing(actor_id))?,
        }
        match target {
            Target::Project => self
                .store
                .project_get(target_id)
                .await?
                .map(|_| ())
                .ok_or_else(|| projects::missing(target_id))?,
            Target::Domain => self
                .store
                .domain_get(target_id)
                .await?
                .map(|_| ())
                .ok_or_else(|| domains::missing(target_id))?,
            Target::System if target_id == crate::auth::SYSTEM_TARGET => {}
            Target::System => {
                return Err(AppError::not_found(format!(
                    "Could not find system: {target_id}."
                )))
            }
        }
        if role_id.is_empty() {
            return Ok(());
        }
        self.store
            .role_get(role_id)
            .await?
            .map(|_| ())
            .ok_or_else(|| roles::missing(role_id))
    }

    fn rec(
        actor: Actor,
        actor_id: &str,
        target: Target,
        target_id: &str,
        role_id: &str,
    ) -> AssignmentRec {
        AssignmentRec {
            actor_type: actor.as_str().into(),
            actor_id: actor_id.into(),
            target_type: target.as_str().into(),
            target_id: target_id.into(),
            role_id: role_id.into(),
        }
    }

    pub async fn grant_role(
        &self,
        ctx: &AuthContext,
        actor: Actor,
        actor_id: &str,
        target: Target,
        target_id: &str,
        role_id: &str,
    ) -> AppResult<()> {
        policy::admin(ctx, "create_grant")?;
        self.check_parties(actor, actor_id, target, target_id, role_id)
            .await?;
        self.store
            .assignment_add(&Self::rec(actor, actor_id, target, target_id, role_id))
            .await?;
        tracing::info!(actor_id, target_id, role_id, "granted role");
        Ok(())
    }

    fn no_grant(actor_id: &str, target_id: &str, role_id: &str) -> AppError {
        AppError::not_found(format!(
            "Could not find role assignment with role: {role_id}, user or group: {actor_id}, project, domain, or system: {target_id}."
        ))
    }

    pub async fn check_grant(
        &self,
        ctx: &AuthContext,
        actor: Actor,
        actor_id: &str,
        target: Target,
        target_id: &str,
        role_id: &str,
    ) -> AppResult<()> {
        if actor == Actor::User {
            policy::admin_or_self(ctx, "check_grant", actor_id)?;
        } else {
            policy::admin(ctx, "check_grant")?;
        }
        self.check_parties(actor, actor_id, target, target_id, role_id)
            .await?;
        let found = self
            .store
            .assignment_list(&AssignmentFilter {
                actor_ids: Some(vec![actor_id.into()]),
                target_id: Some(target_id.into()),
                role_id: Some(role_id.into()),
                ..Default::default()
            })
            .await?;
        if found.is_empty() {
            Err(Self::no_grant(actor_id, target_id, role_id))
        } else {
            Ok(())
        }
    }

    /// Removes a grant. Tokens lose the role at their next validation.
    pub async fn revoke_grant(
        &self,
        ctx: &AuthContext,
        actor: Actor,
        actor_id: &str,
        target: Target,
        target_id: &str,
        role_id: &str,
    ) -> AppResult<()> {
        policy::admin(ctx, "revoke_grant")?;
        self.check_parties(actor, actor_id, target, target_id, role_id)
            .await?;
        if self
            .store
            .assignment_remove(&Self::rec(actor, actor_id, target, target_id, role_id))
            .await?
        {
            tracing::info!(actor_id, target_id, role_id, "revoked role");
            Ok(())
        } else {
            Err(Self::no_grant(actor_id, target_id, role_id))
        }
    }

    /// `GET /v3/projects/{p}/users/{u}/roles` and friends: the roles granted
    /// directly to the actor on the target.
    pub async fn list_grants(
        &self,
        ctx: &AuthContext,
        actor: Actor,
        actor_id: &str,
        target: Target,
        target_id: &str,
    ) -> AppResult<Vec<RoleRec>> {
        if actor == Actor::User {
            policy::admin_or_self(ctx, "list_grants", actor_id)?;
        } else {
            policy::admin(ctx, "list_grants")?;
        }
        self.check_parties(actor, actor_id, target, target_id, "")
            .await?;
        let found = self
            .store
            .assignment_list(&AssignmentFilter {
                actor_ids: Some(vec![actor_id.into()]),
                target_id: Some(target_id.into()),
                ..Default::default()
            })
            .await?;
        let mut out = Vec::new();
        for a in found {
            if let Some(r) = self.store.role_get(&a.role_id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// `GET /v3/role_assignments`. Admins see everything; a user may list
    /// its own assignments (`user.id` = itself).
    pub async fn list_role_assignments(
        &self,
        ctx: &AuthContext,
        q: &AssignmentQuery,
    ) -> AppResult<Vec<AssignmentView>> {
        let own = q.user_id.as_deref() == Some(ctx.user_id.to_string().as_str());
        if !own {
            policy::admin(ctx, "list_role_assignments")?;
        }
        if [q.project_id.is_some(), q.domain_id.is_some(), q.system]
            .iter()
            .filter(|x| **x)
            .count()
            > 1
        {
            return Err(AppError::bad_request(
                "Specify a domain or project, not both",
            ));
        }
        if q.user_id.is_some() && q.group_id.is_some() {
            return Err(AppError::bad_request("Specify a user or group, not both"));
        }
        let mut filter = AssignmentFilter {
            target_id: q
                .project_id
                .clone()
                .or_else(|| q.domain_id.clone())
                .or_else(|| q.system.then(|| crate::auth::SYSTEM_TARGET.to_string())),
            target_type: if q.project_id.is_some() {
                Some("project".into())
            } else if q.domain_id.is_some() {
                Some("domain".into())
            } else if q.system {
                Some("system".into())
            } else {
                None
            },
            role_id: if q.effective { None } else { q.role_id.clone() },
            ..Default::default()
        };
        if let Some(u) = &q.user_id {
            let mut actors = vec![u.clone()];
            if q.effective {
                actors.extend(self.store.user_groups(u).await?.into_iter().map(|g| g.id));
            }
            filter.actor_ids = Some(actors);
        } else if let Some(g) = &q.group_id {
            filter.actor_ids = Some(vec![g.clone()]);
        }
        let direct = self.store.assignment_list(&filter).await?;
        let mut rows: Vec<AssignmentView> = Vec::new();
        let view = |a: AssignmentRec, via_group, prior_role| AssignmentView {
            assignment: a,
            via_group,
            prior_role,
            role_name: None,
            actor: Named::default(),
            target: Named::default(),
        };
        if !q.effective {
            rows.extend(direct.into_iter().map(|a| view(a, None, None)));
        } else {
            let rules = self.store.implied_role_list().await?;
            for a in direct {
                // Group grants become grants to each member.
                let members: Vec<(AssignmentRec, Option<String>)> = if a.actor_type == "group" {
                    let mut v = Vec::new();
                    for u in self.store.group_users(&a.actor_id).await? {
                        if q.user_id.as_ref().is_none_or(|x| *x == u.id) {
                            let mut m = a.clone();
                            m.actor_type = "user".into();
                            m.actor_id = u.id;
                            v.push((m, Some(a.actor_id.clone())));
                        }
                    }
                    v
                } else {
                    vec![(a, None)]
                };
                for (m, via) in members {
                    for role in implied_closure(vec![m.role_id.clone()], &rules) {
                        let prior = (role != m.role_id).then(|| m.role_id.clone());
                        let mut r = m.clone();
                        r.role_id = role;
                        rows.push(view(r, via.clone(), prior));
                    }
                }
            }
            if let Some(role) = &q.role_id {
                rows.retain(|r| &r.assignment.role_id == role);
            }
        }
        if q.include_names {
            for r in &mut rows {
                self.fill_names(r).await?;
            }
        }
        Ok(rows)
    }

    async fn domain_pair(&self, id: &str) -> AppResult<Option<(String, String)>> {
        Ok(self.store.domain_get(id).await?.map(|d| (d.id, d.name)))
    }

    async fn fill_names(&self, r: &mut AssignmentView) -> AppResult<()> {
        let a = &r.assignment;
        r.role_name = self.store.role_get(&a.role_id).await?.map(|x| x.name);
        r.actor = match a.actor_type.as_str() {
            "user" => match self.store.user_get(&a.actor_id).await? {
                Some(u) => Named {
                    name: Some(u.name),
                    domain: self.domain_pair(&u.domain_id).await?,
                },
                None => Named::default(),
            },
            _ => match self.store.group_get(&a.actor_id).await? {
                Some(g) => Named {
                    name: Some(g.name),
                    domain: self.domain_pair(&g.domain_id).await?,
                },
                None => Named::default(),
            },
        };
        r.target = match a.target_type.as_str() {
            "project" => match self.store.project_get(&a.target_id).await? {
                Some(p) => Named {
                    name: Some(p.name),
                    domain: self.domain_pair(&p.domain_id).await?,
                },
                None => Named::default(),
            },
            _ => Named {
                name: self.store.domain_get(&a.target_id).await?.map(|d| d.name),
                domain: None,
            },
        };
        Ok(())
    }
}
