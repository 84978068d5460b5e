//! Network quotas per project: configured defaults (Neutron's), admin
//! overrides in `network_quotas`, enforced inside each create's
//! transaction (see `oxistack_store::network::QuotaCheck`).

use std::collections::BTreeMap;

use oxistack_model::{AppError, AppResult, AuthContext, ProjectId};
use oxistack_store::network::Counted;

use crate::{policy_denied, Network};

/// Every quota resource, with Neutron's default limit.
pub const QUOTA_DEFAULTS: &[(Counted, i64)] = &[
    (Counted::Network, 100),
    (Counted::Subnet, 100),
    (Counted::Port, 500),
    (Counted::Router, 10),
    (Counted::FloatingIp, 50),
    (Counted::SecurityGroup, 10),
    (Counted::SecurityGroupRule, 100),
];

/// A project's quota: limit, and used when details are asked for.
pub type QuotaSet = BTreeMap<&'static str, i64>;

impl Network {
    pub(crate) async fn quota_limit(&self, project: &ProjectId, what: Counted) -> AppResult<i64> {
        let o = self.store.network_quota_overrides(project).await?;
        Ok(o.get(what.name())
            .copied()
            .unwrap_or_else(|| default_of(what)))
    }

    pub fn quota_defaults(&self) -> QuotaSet {
        QUOTA_DEFAULTS.iter().map(|(c, v)| (c.name(), *v)).collect()
    }

    fn check_reader(ctx: &AuthContext, project: &ProjectId) -> AppResult<()> {
        if ctx.is_admin() || ctx.project_id.as_ref() == Some(project) {
            Ok(())
        } else {
            Err(policy_denied("get_quota"))
        }
    }

    pub async fn quota_show(&self, ctx: &AuthContext, project: &ProjectId) -> AppResult<QuotaSet> {
        Self::check_reader(ctx, project)?;
        let mut out = QuotaSet::new();
        for (c, _) in QUOTA_DEFAULTS {
            out.insert(c.name(), self.quota_limit(project, *c).await?);
        }
        Ok(out)
    }

    /// Limit, used and reserved of each resource (`quota_details`).
    pub async fn quota_details(
        &self,
        ctx: &AuthContext,
        project: &ProjectId,
    ) -> AppResult<BTreeMap<&'static str, (i64, i64)>> {
        Self::check_reader(ctx, project)?;
        let mut out = BTreeMap::new();
        for (c, _) in QUOTA_DEFAULTS {
            out.insert(
                c.name(),
                (
                    self.quota_limit(project, *c).await?,
                    self.store.network_usage(project, *c).await?,
                ),
            );
        }
        Ok(out)
    }

    /// Projects whose quota differs from the defaults, with their quota.
    pub async fn quota_list(&self, ctx: &AuthContext) -> AppResult<Vec<(ProjectId, QuotaSet)>> {
        ctx.require_admin()
            .map_err(|_| policy_denied("get_quota"))?;
        let mut out = Vec::new();
        for p in self.store.network_quota_projects().await? {
            out.push((p, self.quota_show(ctx, &p).await?));
        }
        Ok(out)
    }

    pub async fn quota_update(
        &self,
        ctx: &AuthContext,
        project: &ProjectId,
        values: &BTreeMap<String, serde_json::Value>,
    ) -> AppResult<QuotaSet> {
        ctx.require_admin()
            .map_err(|_| policy_denied("update_quota"))?;
        let mut parsed = Vec::new();
        for (k, v) in values {
            if k == "force" || k == "check_limit" {
                continue;
            }
            let c = QUOTA_DEFAULTS
                .iter()
                .find(|(c, _)| c.name() == k)
                .map(|(c, _)| *c)
                .ok_or_else(|| {
                    AppError::bad_request(format!("Unrecognized attribute(s) '{k}'"))
                        .with_code("HTTPBadRequest")
                })?;
            let n = v
                .as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| *n >= -1)
                .ok_or_else(|| {
                    AppError::bad_request(format!(
                        "Invalid input for {k}. Reason: '{v}' is not an integer or is less than -1."
                    ))
                    .with_code("HTTPBadRequest")
                })?;
            parsed.push((c, n));
        }
        for (c, n) in parsed {
            self.store.network_quota_set(project, c.name(), n).await?;
        }
        self.quota_show(ctx, project).await
    }

    pub async fn quota_reset(&self, ctx: &AuthContext, project: &ProjectId) -> AppResult<()> {
        ctx.require_admin()
            .map_err(|_| policy_denied("delete_quota"))?;
        self.store.network_quota_reset(project).await
    }
}

fn default_of(c: Counted) -> i64 {
    QUOTA_DEFAULTS
        .iter()
        .find(|(d, _)| *d == c)
        .map(|(_, v)| *v)
        .unwrap_or(-1)
}
