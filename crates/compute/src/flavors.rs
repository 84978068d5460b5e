//! Flavors: the default set created at first start, and the admin API.

use std::collections::BTreeMap;

use oxistack_model::{AppError, AppResult, AuthContext};
use oxistack_store::compute::{Flavor, FlavorVisibility};

use crate::Compute;

/// The default flavors (id, name, vCPUs, RAM MB, disk GB), as devstack makes them.
pub const DEFAULT_FLAVORS: &[(&str, &str, i64, i64, i64)] = &[
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
];

/// A flavor create request, validated.
#[derive(Debug, Clone)]
pub struct NewFlavor {
    pub id: Option<String>,
    pub name: String,
    pub vcpus: i64,
    pub ram_mb: i64,
    pub disk_gb: i64,
    pub ephemeral_gb: i64,
    pub swap_mb: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub description: Option<String>,
}

fn visibility(ctx: &AuthContext) -> AppResult<FlavorVisibility> {
    Ok(if ctx.is_admin() {
        FlavorVisibility::All
    } else {
        FlavorVisibility::PublicAnd(ctx.project()?)
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 255
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_. ".contains(c))
        && id.trim() == id
}

impl Compute {
    /// Creates the default flavors if none exist (first start).
    pub async fn ensure_default_flavors(&self) -> AppResult<()> {
        if !self
            .store
            .flavor_list(FlavorVisibility::All, None)
            .await?
            .is_empty()
        {
            return Ok(());
        }
        for (id, name, vcpus, ram, disk) in DEFAULT_FLAVORS {
            self.store
                .flavor_create(&Flavor {
                    id: id.to_string(),
                    name: name.to_string(),
                    vcpus: *vcpus,
                    ram_mb: *ram,
                    disk_gb: *disk,
                    ephemeral_gb: 0,
                    swap_mb: 0,
                    rxtx_factor: 1.0,
                    is_public: true,
                    disabled: false,
                    description: None,
                    extra_specs: BTreeMap::new(),
                })
                .await?;
        }
        Ok(())
    }

    pub async fn flavor_list(
        &self,
        ctx: &AuthContext,
        is_public: Option<bool>,
    ) -> AppResult<Vec<Flavor>> {
        // Non-admins always see public flavors plus those shared with them.
        let filter = if ctx.is_admin() { is_public } else { None };
        self.store.flavor_list(visibility(ctx)?, filter).await
    }

    pub async fn flavor_get(&self, ctx: &AuthContext, id: &str) -> AppResult<Flavor> {
        self.store.flavor_get(id, visibility(ctx)?).await
    }

    pub async fn flavor_create(&self, ctx: &AuthContext, f: NewFlavor) -> AppResult<Flavor> {
        ctx.require_admin()?;
        let name = f.name.trim();
        if name.is_empty() || name.len() > 255 || name != f.name {
            return Err(AppError::bad_request(
                "Invalid input for field/attribute name: the name must be 1 to 255 characters without leading or trailing spaces.",
            ));
        }
        let id = match f.id.as_deref() {
            None | Some("auto") => uuid::Uuid::new_v4().to_string(),
            Some(id) if valid_id(id) => id.to_string(),
            Some(id) => {
                return Err(AppError::bad_request(format!(
                    "Invalid input for field/attribute id. Value: {id}."
                )))
            }
        };
        for (field, v, min) in [
            ("vcpus", f.vcpus, 1),
            ("ram", f.ram_mb, 1),
            ("disk", f.disk_gb, 0),
            ("OS-FLV-EXT-DATA:ephemeral", f.ephemeral_gb, 0),
            ("swap", f.swap_mb, 0),
        ] {
            if v < min || v > i32::MAX as i64 {
                return Err(AppError::bad_request(format!(
                    "Invalid input for field/attribute {field}. Value: {v}. {v} is less than the minimum of {min}"
                )));
            }
        }
        if f.rxtx_factor <= 0.0 {
            return Err(AppError::bad_request(
                "Invalid input for field/attribute rxtx_factor.",
            ));
        }
        let flavor = Flavor {
            id,
            name: f.name,
            vcpus: f.vcpus,
            ram_mb: f.ram_mb,
            disk_gb: f.disk_gb,
            ephemeral_gb: f.ephemeral_gb,
            swap_mb: f.swap_mb,
            rxtx_factor: f.rxtx_factor,
            is_public: f.is_public,
            disabled: false,
            description: f.description,
            extra_specs: BTreeMap::new(),
        };
        self.store.flavor_create(&flavor).await?;
        Ok(flavor)
    }

    pub async fn flavor_update(
        &self,
        ctx: &AuthContext,
        id: &str,
        description: Option<&str>,
    ) -> AppResult<Flavor> {
        ctx.require_admin()?;
        self.store
            .flavor_update_description(id, description)
            .await?;
        self.store.flavor_get(id, FlavorVisibility::All).await
    }

    pub async fn flavor_delete(&self, ctx: &AuthContext, id: &str) -> AppResult<()> {
        ctx.require_admin()?;
        self.store.flavor_delete(id).await
    }

    pub async fn flavor_extra_specs(
        &self,
        ctx: &AuthContext,
        id: &str,
    ) -> AppResult<BTreeMap<String, String>> {
        Ok(self.flavor_get(ctx, id).await?.extra_specs)
    }

    pub async fn flavor_set_extra_specs(
        &self,
        ctx: &AuthContext,
        id: &str,
        specs: &BTreeMap<String, String>,
    ) -> AppResult<BTreeMap<String, String>> {
        ctx.require_admin()?;
        self.store.flavor_get(id, FlavorVisibility::All).await?;
        for (k, v) in specs {
            if k.is_empty() || k.len() > 255 || v.len() > 255 {
                return Err(AppError::bad_request(
                    "Invalid input for field/attribute extra_specs: keys and values are 1 to 255 characters.",
                ));
            }
        }
        for (k, v) in specs {
            self.store.flavor_set_extra_spec(id, k, v).await?;
        }
        Ok(specs.clone())
    }

    pub async fn flavor_delete_extra_spec(
        &self,
        ctx: &AuthContext,
        id: &str,
        key: &str,
    ) -> AppResult<()> {
        ctx.require_admin()?;
        self.store.flavor_get(id, FlavorVisibility::All).await?;
        self.store.flavor_delete_extra_spec(id, key).await
    }

    pub async fn flavor_access(&self, ctx: &AuthContext, id: &str) -> AppResult<Vec<String>> {
        ctx.require_admin()?;
        let f = self.store.flavor_get(id, FlavorVisibility::All).await?;
        if f.is_public {
            return Err(AppError::not_found(
                "Access list not available for public flavors.",
            ));
        }
        self.store.flavor_access_list(id).await
    }

    pub async fn flavor_access_change(
        &self,
        ctx: &AuthContext,
        id: &str,
        project: &str,
        add: bool,
    ) -> AppResult<Vec<String>> {
        ctx.require_admin()?;
        let f = self.store.flavor_get(id, FlavorVisibility::All).await?;
        if add {
            if f.is_public {
                return Err(AppError::conflict(format!(
                    "Can not add access to a public flavor {id}."
                )));
            }
            self.store.flavor_access_add(id, project).await?;
        } else {
            self.store.flavor_access_remove(id, project).await?;
        }
        self.store.flavor_access_list(id).await
    }
}
