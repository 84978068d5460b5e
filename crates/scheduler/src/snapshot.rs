//! A consistent picture of every provider (inventory, usage, traits,
//! aggregates) read in one transaction, and the capacity rule evaluated on it.
//!
//! Placement's rule: an amount fits a provider's inventory of a class when
//! `min_unit <= amount <= max_unit`, `amount % step_size == 0`, and
//! `used + amount <= (total - reserved) * allocation_ratio`.

use std::collections::{BTreeSet, HashMap};

use oxistack_model::AppError;
use oxistack_store::placement::{self as db, InventoryRow, ProviderRow};
use oxistack_store::sqlx::AnyConnection;

/// What can be allocated of an inventory, rounded down as Placement does.
pub fn capacity(inv: &InventoryRow) -> i64 {
    ((inv.total - inv.reserved) as f64 * inv.allocation_ratio) as i64
}

/// Why an amount does not fit an inventory, if it does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misfit {
    NoInventory,
    Units,
    Capacity,
}

pub fn check_fit(inv: Option<&InventoryRow>, used: i64, amount: i64) -> Result<(), Misfit> {
    let inv = inv.ok_or(Misfit::NoInventory)?;
    if amount < inv.min_unit
        || amount > inv.max_unit
        || (inv.step_size > 0 && amount % inv.step_size != 0)
    {
        return Err(Misfit::Units);
    }
    // Compare in floating point like Placement, so a fractional ratio is
    // not rounded in the caller's favour.
    if (used + amount) as f64 > (inv.total - inv.reserved) as f64 * inv.allocation_ratio {
        return Err(Misfit::Capacity);
    }
    Ok(())
}

#[derive(Debug, Default)]
pub struct Snapshot {
    pub providers: Vec<ProviderRow>,
    pub inventories: HashMap<String, Vec<InventoryRow>>,
    pub usages: HashMap<(String, String), i64>,
    pub traits: HashMap<String, BTreeSet<String>>,
    pub aggregates: HashMap<String, BTreeSet<String>>,
}

impl Snapshot {
    /// Reads everything but the providers (which the caller may have locked).
    pub async fn load(
        c: &mut AnyConnection,
        providers: Vec<ProviderRow>,
    ) -> Result<Snapshot, AppError> {
        let mut s = Snapshot {
            providers,
            ..Snapshot::default()
        };
        for (uuid, inv) in db::all_inventories(c).await? {
            s.inventories.entry(uuid).or_default().push(inv);
        }
        for (uuid, class, used) in db::all_usages(c).await? {
            s.usages.insert((uuid, class), used);
        }
        for (uuid, t) in db::all_provider_traits(c).await? {
            s.traits.entry(uuid).or_default().insert(t);
        }
        for (uuid, a) in db::all_provider_aggregates(c).await? {
            s.aggregates.entry(uuid).or_default().insert(a);
        }
        Ok(s)
    }

    pub fn inventory(&self, uuid: &str, class: &str) -> Option<&InventoryRow> {
        self.inventories
            .get(uuid)?
            .iter()
            .find(|i| i.resource_class == class)
    }

    pub fn used(&self, uuid: &str, class: &str) -> i64 {
        self.usages
            .get(&(uuid.to_string(), class.to_string()))
            .copied()
            .unwrap_or(0)
    }

    /// True when the provider alone can take every (class, amount).
    pub fn fits_all(&self, uuid: &str, wanted: &[(String, i64)]) -> bool {
        wanted.iter().all(|(class, amount)| {
            check_fit(self.inventory(uuid, class), self.used(uuid, class), *amount).is_ok()
        })
    }

    /// Capacity not yet allocated, for spreading.
    pub fn free(&self, uuid: &str, class: &str) -> i64 {
        self.inventory(uuid, class)
            .map(|i| capacity(i) - self.used(uuid, class))
            .unwrap_or(0)
    }

    pub fn has_traits(&self, uuid: &str, required: &[String], forbidden: &[String]) -> bool {
        let empty = BTreeSet::new();
        let have = self.traits.get(uuid).unwrap_or(&empty);
        required.iter().all(|t| have.contains(t)) && forbidden.iter().all(|t| !have.contains(t))
    }

    /// `member_of`: each group is a set of aggregates of which the provider
    /// must be in at least one; every group must match.
    pub fn in_aggregates(&self, uuid: &str, groups: &[Vec<String>]) -> bool {
        let empty = BTreeSet::new();
        let have = self.aggregates.get(uuid).unwrap_or(&empty);
        groups.iter().all(|g| g.iter().any(|a| have.contains(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inv(total: i64, reserved: i64, ratio: f64) -> InventoryRow {
        InventoryRow {
            resource_class: "VCPU".into(),
            total,
            reserved,
            min_unit: 1,
            max_unit: total,
            step_size: 1,
            allocation_ratio: ratio,
            updated_at: oxistack_model::time::now(),
        }
    }

    #[test]
    fn ratio_and_reserved_bound_capacity() {
        let i = inv(2, 0, 4.0);
        assert_eq!(capacity(&i), 8);
        assert_eq!(
            check_fit(Some(&i), 0, 3),
            Err(Misfit::Units),
            "max_unit is 2"
        );
        assert!(check_fit(Some(&i), 6, 2).is_ok());
        let mut j = i.clone();
        j.max_unit = 8;
        assert!(check_fit(Some(&j), 6, 2).is_ok());
        assert_eq!(check_fit(Some(&j), 7, 2), Err(Misfit::Capacity));
        let m = inv(2048, 512, 1.0);
        assert_eq!(capacity(&m), 1536);
        assert_eq!(check_fit(None, 0, 1), Err(Misfit::NoInventory));
    }

    #[test]
    fn units_and_steps() {
        let mut i = inv(100, 0, 1.0);
        i.min_unit = 2;
        i.step_size = 2;
        assert_eq!(check_fit(Some(&i), 0, 1), Err(Misfit::Units));
        assert_eq!(check_fit(Some(&i), 0, 3), Err(Misfit::Units));
        assert!(check_fit(Some(&i), 0, 4).is_ok());
    }
}
