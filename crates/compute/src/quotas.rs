//! Per-project compute quotas: configured defaults, admin overrides, usage.
//!
//! Enforced: instances, cores, ram (on server create, atomically with the
//! insert), key_pairs (per user, on keypair create), metadata_items. The
//! other Nova quota names are reported with their defaults so clients that
//! read them keep working.

use std::collections::BTreeMap;

use oxistack_model::{AppError, AppResult, AuthContext, ProjectId};
use oxistack_store::compute::ComputeUsage;

use crate::Compute;

/// Every quota name the API shows, in Nova's order. The bool says whether
/// microversion 2.36 removed it (network-related quotas).
pub const QUOTA_NAMES: &[(&str, bool)] = &[
    ("cores", false),
    ("fixed_ips", true),
    ("floating_ips", true),
    ("injected_file_content_bytes", false),
    ("injected_file_path_bytes", false),
    ("injected_files", false),
    ("instances", false),
    ("key_pairs", false),
    ("metadata_items", false),
    ("ram", false),
    ("security_group_rules", true),
    ("security_groups", true),
    ("server_group_members", false),
    ("server_groups", false),
];

/// A project's quota: limit and usage per resource.
#[derive(Debug, Clone, Default)]
pub struct QuotaSet {
    pub limits: BTreeMap<String, i64>,
    pub in_use: BTreeMap<String, i64>,
}

impl Compute {
    fn default_limit(&self, resource: &str) -> i64 {
        let s = &self.settings;
        match resource {
            "instances" => s.quota_instances,
            "cores" => s.quota_cores,
            "ram" => s.quota_ram_mb,
            "key_pairs" => s.quota_key_pairs,
            "metadata_items" => s.quota_metadata_items,
            "injected_files" => 5,
            "injected_file_content_bytes" => 10240,
            "injected_file_path_bytes" => 255,
            "server_groups" | "server_group_members" | "security_groups" | "floating_ips" => 10,
            "security_group_rules" => 20,
            _ => -1,
        }
    }

    pub async fn quota_limit_for(&self, project: &str, resource: &str) -> AppResult<i64> {
        let o = self.store.quota_overrides(project).await?;
        Ok(o.get(resource)
            .copied()
            .unwrap_or_else(|| self.default_limit(resource)))
    }

    pub fn quota_defaults(&self) -> BTreeMap<String, i64> {
        QUOTA_NAMES
            .iter()
            .map(|(n, _)| (n.to_string(), self.default_limit(n)))
            .collect()
    }

    pub(crate) async fn compute_limits(&self, project: &ProjectId) -> AppResult<ComputeUsage> {
        let p = project.to_string();
        Ok(ComputeUsage {
            instances: self.quota_limit_for(&p, "instances").await?,
            cores: self.quota_limit_for(&p, "cores").await?,
            ram_mb: self.quota_limit_for(&p, "ram").await?,
        })
    }

    /// The quota of `project`: callers see their own project; admins any.
    pub async fn quota_show(&self, ctx: &AuthContext, project: &str) -> AppResult<QuotaSet> {
        if ctx.project_id.map(|p| p.to_string()).as_deref() != Some(project) {
            ctx.require_admin()?;
        }
        let overrides = self.store.quota_overrides(project).await?;
        let mut set = QuotaSet::default();
        for (name, _) in QUOTA_NAMES {
            let limit = overrides
                .get(*name)
                .copied()
                .unwrap_or_else(|| self.default_limit(name));
            set.limits.insert(name.to_string(), limit);
            set.in_use.insert(name.to_string(), 0);
        }
        if let Ok(pid) = project.parse::<ProjectId>() {
            let u = self.store.compute_usage(&pid).await?;
            set.in_use.insert("instances".into(), u.instances);
            set.in_use.insert("cores".into(), u.cores);
            set.in_use.insert("ram".into(), u.ram_mb);
        }
        if ctx.project_id.map(|p| p.to_string()).as_deref() == Some(project) {
            set.in_use.insert(
                "key_pairs".into(),
                self.store.keypair_count(&ctx.user_id).await?,
            );
        }
        Ok(set)
    }

    pub async fn quota_update(
        &self,
        ctx: &AuthContext,
        project: &str,
        changes: &BTreeMap<String, i64>,
        force: bool,
    ) -> AppResult<QuotaSet> {
        ctx.require_admin()?;
        for (name, v) in changes {
            if !QUOTA_NAMES.iter().any(|(n, _)| n == name) {
                return Err(AppError::bad_request(format!(
                    "Invalid input for field/attribute quota_set. Additional properties are not allowed ('{name}' was unexpected)"
                )));
            }
            if *v < -1 {
                return Err(AppError::bad_request(format!(
                    "Invalid input for field/attribute {name}. Value: {v}. {v} is less than the minimum of -1"
                )));
            }
        }
        if !force {
            let current = self.quota_show(ctx, project).await?;
            for (name, v) in changes {
                let used = current.in_use.get(name).copied().unwrap_or(0);
                if *v >= 0 && *v < used {
                    return Err(AppError::bad_request(format!(
                        "Quota limit {v} for {name} must be greater than or equal to already used and reserved {used}."
                    )));
                }
            }
        }
        for (name, v) in changes {
            self.store.quota_set(project, name, *v).await?;
        }
        self.quota_show(ctx, project).await
    }

    pub async fn quota_reset(&self, ctx: &AuthContext, project: &str) -> AppResult<()> {
        ctx.require_admin()?;
        self.store.quota_reset(project).await
    }
}
