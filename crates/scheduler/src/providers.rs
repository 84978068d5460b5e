//! Resource providers and what hangs off them: inventories, traits and
//! aggregates. Every write that changes what a provider offers bumps its
//! generation, conditional on the generation the caller saw, so two writers
//! that raced see a `placement.concurrent_update` conflict instead of one
//! silently undoing the other.

use oxistack_model::AppError;
use oxistack_store::placement::{self as db, InventoryRow, ProviderRow};
use oxistack_store::sqlx::AnyConnection;

use crate::catalog;
use crate::snapshot::Snapshot;
use crate::Placement;

pub const CONCURRENT_UPDATE: &str = "placement.concurrent_update";
pub const DUPLICATE_NAME: &str = "placement.duplicate_name";
pub const PROVIDER_IN_USE: &str = "placement.resource_provider.inuse";
pub const CANNOT_DELETE_PARENT: &str = "placement.resource_provider.cannot_delete_parent";
pub const INVENTORY_IN_USE: &str = "placement.inventory.inuse";

/// Largest integer Placement accepts for totals and units.
pub const MAX_INT: i64 = 2_147_483_647;

/// The filters of `GET /resource_providers`; empty means "no filter".
#[derive(Debug, Clone, Default)]
pub struct ProviderFilter {
    pub uuid: Option<String>,
    pub name: Option<String>,
    /// Each inner list is an `in:` group of aggregates; all groups must match.
    pub member_of: Vec<Vec<String>>,
    pub resources: Vec<(String, i64)>,
    pub in_tree: Option<String>,
    pub required: Vec<String>,
    pub forbidden: Vec<String>,
}

/// An inventory as written through the API (defaults already applied).
#[derive(Debug, Clone, PartialEq)]
pub struct InventorySpec {
    pub total: i64,
    pub reserved: i64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
    pub allocation_ratio: f64,
}

impl InventorySpec {
    fn row(&self, class: &str) -> InventoryRow {
        InventoryRow {
            resource_class: class.to_string(),
            total: self.total,
            reserved: self.reserved,
            min_unit: self.min_unit,
            max_unit: self.max_unit,
            step_size: self.step_size,
            allocation_ratio: self.allocation_ratio,
            updated_at: oxistack_model::time::now(),
        }
    }
}

pub fn concurrent_update(what: &str) -> AppError {
    AppError::conflict(format!(
        "resource provider generation conflict: {what} was updated by another request. Please retry your request."
    ))
    .with_code(CONCURRENT_UPDATE)
}

pub fn provider_not_found(uuid: &str) -> AppError {
    AppError::not_found(format!("No resource provider with uuid {uuid} found"))
}

pub(crate) async fn must_get(c: &mut AnyConnection, uuid: &str) -> Result<ProviderRow, AppError> {
    db::get_provider(c, uuid)
        .await?
        .ok_or_else(|| provider_not_found(uuid))
}

pub(crate) async fn class_exists(c: &mut AnyConnection, class: &str) -> Result<bool, AppError> {
    Ok(catalog::is_standard_class(class) || db::get_custom_class(c, class).await?.is_some())
}

pub(crate) async fn trait_exists(c: &mut AnyConnection, name: &str) -> Result<bool, AppError> {
    Ok(catalog::is_standard_trait(name) || db::get_custom_trait(c, name).await?.is_some())
}

/// Refuses unknown traits with Placement's message.
pub(crate) async fn check_traits(c: &mut AnyConnection, names: &[String]) -> Result<(), AppError> {
    let mut missing = Vec::new();
    for n in names {
        if !trait_exists(c, n).await? {
            missing.push(n.as_str());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(AppError::bad_request(format!(
            "No such trait(s): {}",
            missing.join(", ")
        )))
    }
}

fn check_inventory(
    uuid: &str,
    class: &str,
    inv: &InventorySpec,
    reserved_may_equal_total: bool,
) -> Result<(), AppError> {
    let bad = |why: &str| {
        AppError::bad_request(format!(
            "Bad inventory {class} for resource provider {uuid}: {why}"
        ))
    };
    if !(1..=MAX_INT).contains(&inv.total) {
        return Err(bad("total must be between 1 and 2147483647"));
    }
    if !(0..=MAX_INT).contains(&inv.reserved) {
        return Err(bad("reserved must be between 0 and 2147483647"));
    }
    for (n, v) in [
        ("min_unit", inv.min_unit),
        ("max_unit", inv.max_unit),
        ("step_size", inv.step_size),
    ] {
        if !(1..=MAX_INT).contains(&v) {
            return Err(bad(&format!("{n} must be between 1 and 2147483647")));
        }
    }
    if !(inv.allocation_ratio > 0.0 && inv.allocation_ratio.is_finite()) {
        return Err(bad("allocation_ratio must be greater than 0"));
    }
    let room = inv.total - inv.reserved;
    if room < 0 || (room == 0 && !reserved_may_equal_total) {
        let rule = if reserved_may_equal_total {
            "greater than or equal to"
        } else {
            "greater than"
        };
        return Err(AppError::bad_request(format!(
            "Invalid inventory for '{class}' on resource provider '{uuid}'. The reserved value is {rule} total."
        )));
    }
    Ok(())
}

impl Placement {
    pub async fn create_provider(
        &self,
        uuid: Option<String>,
        name: &str,
        parent: Option<String>,
    ) -> Result<ProviderRow, AppError> {
        let uuid = uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let mut tx = self.store.begin().await?;
        if db::get_provider(&mut tx, &uuid).await?.is_some() {
            return Err(AppError::conflict(format!(
                "Conflicting resource provider uuid: {uuid} already exists."
            ))
            .with_code(DUPLICATE_NAME));
        }
        if db::get_provider_by_name(&mut tx, name).await?.is_some() {
            return Err(AppError::conflict(format!(
                "Conflicting resource provider name: {name} already exists."
            ))
            .with_code(DUPLICATE_NAME));
        }
        let root = match &parent {
            None => uuid.clone(),
            Some(p) => {
                let parent_row = db::get_provider(&mut tx, p).await?.ok_or_else(|| {
                    AppError::bad_request(format!("parent provider UUID {p} does not exist."))
                })?;
                parent_row.root_provider_uuid
            }
        };
        db::insert_provider(&mut tx, &uuid, name, parent.as_deref(), &root)
            .await
            .map_err(|e| duplicate_name(e, name))?;
        let row = must_get(&mut tx, &uuid).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        tracing::info!(provider = %uuid, name, "created resource provider");
        Ok(row)
    }

    pub async fn get_provider(&self, uuid: &str) -> Result<ProviderRow, AppError> {
        let mut tx = self.store.begin().await?;
        must_get(&mut tx, uuid).await
    }

    pub async fn list_providers(&self, f: &ProviderFilter) -> Result<Vec<ProviderRow>, AppError> {
        let mut tx = self.store.begin().await?;
        for (class, _) in &f.resources {
            if !class_exists(&mut tx, class).await? {
                return Err(AppError::bad_request(format!(
                    "Invalid resource class in resources parameter: No such resource class {class}."
                )));
            }
        }
        let mut all_traits = f.required.clone();
        all_traits.extend(f.forbidden.iter().cloned());
        check_traits(&mut tx, &all_traits).await?;
        let in_tree_root = match &f.in_tree {
            Some(t) => match db::get_provider(&mut tx, t).await? {
                Some(p) => Some(p.root_provider_uuid),
                None => return Ok(Vec::new()),
            },
            None => None,
        };
        let providers = db::list_providers(&mut tx).await?;
        let snap = Snapshot::load(&mut tx, providers).await?;
        Ok(snap
            .providers
            .iter()
            .filter(|p| f.uuid.as_deref().is_none_or(|u| u == p.uuid))
            .filter(|p| f.name.as_deref().is_none_or(|n| n == p.name))
            .filter(|p| {
                in_tree_root
                    .as_deref()
                    .is_none_or(|r| r == p.root_provider_uuid)
            })
            .filter(|p| snap.in_aggregates(&p.uuid, &f.member_of))
            .filter(|p| snap.has_traits(&p.uuid, &f.required, &f.forbidden))
            .filter(|p| snap.fits_all(&p.uuid, &f.resources))
            .cloned()
            .collect())
    }

    /// Renames and (once, from none) parents a provider.
    pub async fn update_provider(
        &self,
        uuid: &str,
        name: &str,
        parent: Option<Option<String>>,
    ) -> Result<ProviderRow, AppError> {
        let mut tx = self.store.begin().await?;
        let rp = db::lock_provider(&mut tx, &self.store, uuid)
            .await?
            .ok_or_else(|| provider_not_found(uuid))?;
        if let Some(other) = db::get_provider_by_name(&mut tx, name).await? {
            if other.uuid != rp.uuid {
                return Err(AppError::conflict(format!(
                    "Conflicting resource provider name: {name} already exists."
                ))
                .with_code(DUPLICATE_NAME));
            }
        }
        let mut new_parent = rp.parent_provider_uuid.clone();
        if let Some(p) = parent {
            if p != rp.parent_provider_uuid {
                if rp.parent_provider_uuid.is_some() {
                    let msg = if p.is_none() {
                        "Un-parenting a provider is not currently allowed."
                    } else {
                        "Re-parenting a provider is not currently allowed."
                    };
                    return Err(AppError::bad_request(msg));
                }
                let p = p.unwrap_or_default();
                let parent_row = db::get_provider(&mut tx, &p).await?.ok_or_else(|| {
                    AppError::bad_request(format!("parent provider UUID {p} does not exist."))
                })?;
                if parent_row.root_provider_uuid == rp.uuid {
                    return Err(AppError::bad_request(
                        "creating loop in the provider tree is not allowed.",
                    ));
                }
                db::set_root(&mut tx, &rp.uuid, &parent_row.root_provider_uuid).await?;
                new_parent = Some(p);
            }
        }
        db::update_provider(&mut tx, uuid, name, new_parent.as_deref())
            .await
            .map_err(|e| duplicate_name(e, name))?;
        let row = must_get(&mut tx, uuid).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(row)
    }

    pub async fn delete_provider(&self, uuid: &str) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        db::lock_provider(&mut tx, &self.store, uuid)
            .await?
            .ok_or_else(|| provider_not_found(uuid))?;
        if !db::provider_allocations(&mut tx, uuid).await?.is_empty() {
            return Err(AppError::conflict(format!(
                "Unable to delete resource provider {uuid}: Resource provider has allocations."
            ))
            .with_code(PROVIDER_IN_USE));
        }
        if db::count_children(&mut tx, uuid).await? > 0 {
            return Err(AppError::conflict(format!(
                "Unable to delete parent resource provider {uuid}: It has child resource providers."
            ))
            .with_code(CANNOT_DELETE_PARENT));
        }
        db::delete_provider(&mut tx, uuid).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        tracing::info!(provider = %uuid, "deleted resource provider");
        Ok(())
    }

    // ---- inventories ----

    pub async fn inventories(
        &self,
        uuid: &str,
    ) -> Result<(ProviderRow, Vec<InventoryRow>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = must_get(&mut tx, uuid).await?;
        let inv = db::list_inventories(&mut tx, uuid).await?;
        Ok((rp, inv))
    }

    pub async fn inventory(
        &self,
        uuid: &str,
        class: &str,
    ) -> Result<(ProviderRow, InventoryRow), AppError> {
        let (rp, inv) = self.inventories(uuid).await?;
        let one = inv
            .into_iter()
            .find(|i| i.resource_class == class)
            .ok_or_else(|| {
                AppError::not_found(format!(
                    "No inventory of class {class} found for resource provider {uuid}"
                ))
            })?;
        Ok((rp, one))
    }

    /// Replaces the provider's whole inventory (`PUT .../inventories`), or
    /// with `only` set, the listed classes and nothing else. Classes that
    /// disappear must have no allocations.
    pub async fn set_inventories(
        &self,
        uuid: &str,
        generation: i64,
        inventories: &[(String, InventorySpec)],
        replace_all: bool,
        reserved_may_equal_total: bool,
    ) -> Result<(ProviderRow, Vec<InventoryRow>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = db::lock_provider(&mut tx, &self.store, uuid)
            .await?
            .ok_or_else(|| provider_not_found(uuid))?;
        if rp.generation != generation {
            return Err(concurrent_update(uuid));
        }
        for (class, spec) in inventories {
            if !class_exists(&mut tx, class).await? {
                return Err(AppError::bad_request(format!(
                    "Unknown resource class in inventory for resource provider {uuid}: {class}"
                )));
            }
            check_inventory(uuid, class, spec, reserved_may_equal_total)?;
        }
        if replace_all {
            for old in db::list_inventories(&mut tx, uuid).await? {
                if inventories.iter().any(|(c, _)| *c == old.resource_class) {
                    continue;
                }
                if db::class_in_use(&mut tx, Some(uuid), &old.resource_class).await? {
                    return Err(AppError::conflict(format!(
                        "update conflict: Inventory for '{}' on resource provider '{uuid}' in use.",
                        old.resource_class
                    ))
                    .with_code(INVENTORY_IN_USE));
                }
                db::delete_inventory(&mut tx, uuid, &old.resource_class).await?;
            }
        }
        for (class, spec) in inventories {
            db::upsert_inventory(&mut tx, uuid, &spec.row(class)).await?;
        }
        if !db::bump_generation(&mut tx, uuid, rp.generation).await? {
            return Err(concurrent_update(uuid));
        }
        let rp = must_get(&mut tx, uuid).await?;
        let inv = db::list_inventories(&mut tx, uuid).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok((rp, inv))
    }

    /// `POST .../inventories`: adds one class that the provider lacks.
    pub async fn add_inventory(
        &self,
        uuid: &str,
        generation: i64,
        class: &str,
        spec: &InventorySpec,
        reserved_may_equal_total: bool,
    ) -> Result<(ProviderRow, InventoryRow), AppError> {
        {
            let mut tx = self.store.begin().await?;
            must_get(&mut tx, uuid).await?;
            if db::list_inventories(&mut tx, uuid)
                .await?
                .iter()
                .any(|i| i.resource_class == class)
            {
                return Err(AppError::conflict(format!(
                    "Update conflict: Inventory for requested resource class {class} on resource provider {uuid} already exists."
                )));
            }
        }
        let (rp, inv) = self
            .set_inventories(
                uuid,
                generation,
                &[(class.to_string(), spec.clone())],
                false,
                reserved_may_equal_total,
            )
            .await?;
        let one = inv
            .into_iter()
            .find(|i| i.resource_class == class)
            .ok_or_else(|| AppError::internal("inventory vanished"))?;
        Ok((rp, one))
    }

    /// `PUT .../inventories/{class}`: updates one existing class.
    pub async fn update_inventory(
        &self,
        uuid: &str,
        generation: i64,
        class: &str,
        spec: &InventorySpec,
        reserved_may_equal_total: bool,
    ) -> Result<(ProviderRow, InventoryRow), AppError> {
        let (rp, inv) = self
            .set_inventories(
                uuid,
                generation,
                &[(class.to_string(), spec.clone())],
                false,
                reserved_may_equal_total,
            )
            .await?;
        let one = inv
            .into_iter()
            .find(|i| i.resource_class == class)
            .ok_or_else(|| AppError::internal("inventory vanished"))?;
        Ok((rp, one))
    }

    /// Deletes one class (`class = Some`) or all of the inventory. Refused
    /// while allocations use it.
    pub async fn delete_inventory(&self, uuid: &str, class: Option<&str>) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = db::lock_provider(&mut tx, &self.store, uuid)
            .await?
            .ok_or_else(|| provider_not_found(uuid))?;
        let existing = db::list_inventories(&mut tx, uuid).await?;
        let doomed: Vec<String> = match class {
            Some(c) => {
                if !existing.iter().any(|i| i.resource_class == c) {
                    return Err(AppError::not_found(format!(
                        "No inventory of class {c} found for delete"
                    )));
                }
                vec![c.to_string()]
            }
            None => existing.iter().map(|i| i.resource_class.clone()).collect(),
        };
        for c in &doomed {
            if db::class_in_use(&mut tx, Some(uuid), c).await? {
                return Err(AppError::conflict(format!(
                    "Unable to delete inventory of class {c} for resource provider {uuid}: Inventory for '{c}' on resource provider '{uuid}' in use."
                ))
                .with_code(INVENTORY_IN_USE));
            }
            db::delete_inventory(&mut tx, uuid, c).await?;
        }
        if !db::bump_generation(&mut tx, uuid, rp.generation).await? {
            return Err(concurrent_update(uuid));
        }
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(())
    }

    // ---- provider traits ----

    pub async fn provider_traits(
        &self,
        uuid: &str,
    ) -> Result<(ProviderRow, Vec<String>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = must_get(&mut tx, uuid).await?;
        Ok((rp, db::provider_traits(&mut tx, uuid).await?))
    }

    /// Replaces the provider's traits (empty list: removes them all).
    pub async fn set_provider_traits(
        &self,
        uuid: &str,
        generation: Option<i64>,
        traits: &[String],
    ) -> Result<(ProviderRow, Vec<String>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = db::lock_provider(&mut tx, &self.store, uuid)
            .await?
            .ok_or_else(|| provider_not_found(uuid))?;
        if generation.is_some_and(|g| g != rp.generation) {
            return Err(concurrent_update(uuid));
        }
        check_traits(&mut tx, traits).await?;
        let mut traits = traits.to_vec();
        traits.sort();
        traits.dedup();
        db::set_provider_traits(&mut tx, uuid, &traits).await?;
        if !db::bump_generation(&mut tx, uuid, rp.generation).await? {
            return Err(concurrent_update(uuid));
        }
        let rp = must_get(&mut tx, uuid).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok((rp, traits))
    }

    // ---- aggregates ----

    pub async fn provider_aggregates(
        &self,
        uuid: &str,
    ) -> Result<(ProviderRow, Vec<String>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = must_get(&mut tx, uuid).await?;
        Ok((rp, db::provider_aggregates(&mut tx, uuid).await?))
    }

    /// Replaces the provider's aggregates. With a generation (1.19+), the
    /// write is conditional and bumps it; without, it does neither (as
    /// Placement before 1.19).
    pub async fn set_provider_aggregates(
        &self,
        uuid: &str,
        generation: Option<i64>,
        aggregates: &[String],
    ) -> Result<(ProviderRow, Vec<String>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = db::lock_provider(&mut tx, &self.store, uuid)
            .await?
            .ok_or_else(|| provider_not_found(uuid))?;
        if generation.is_some_and(|g| g != rp.generation) {
            return Err(concurrent_update(uuid));
        }
        let mut aggs = aggregates.to_vec();
        aggs.sort();
        aggs.dedup();
        db::set_provider_aggregates(&mut tx, uuid, &aggs).await?;
        if generation.is_some() && !db::bump_generation(&mut tx, uuid, rp.generation).await? {
            return Err(concurrent_update(uuid));
        }
        let rp = must_get(&mut tx, uuid).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok((rp, aggs))
    }
}

/// A unique-name race lost between our check and the insert.
fn duplicate_name(e: AppError, name: &str) -> AppError {
    if e.kind == oxistack_model::ErrorKind::Conflict {
        AppError::conflict(format!(
            "Conflicting resource provider name: {name} already exists."
        ))
        .with_code(DUPLICATE_NAME)
    } else {
        e
    }
}
