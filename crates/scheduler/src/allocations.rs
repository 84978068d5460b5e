//! Consumers and their allocations, and the usages they add up to.
//!
//! Writes replace a consumer's allocations as a whole, in one transaction
//! that locks every provider involved (in uuid order, so writers never
//! deadlock), re-reads usage under the lock, checks capacity and bumps each
//! provider's generation. Two writes that race are therefore serialised and
//! the second sees the first's usage: there is no window to overcommit.

use std::collections::{BTreeMap, BTreeSet};

use oxistack_model::AppError;
use oxistack_store::placement::{self as db, AllocationRow, ConsumerRow, ProviderRow};
use oxistack_store::sqlx::AnyConnection;
use oxistack_store::Store;

use crate::providers::{class_exists, concurrent_update, provider_not_found};
use crate::snapshot::{check_fit, Misfit, Snapshot};
use crate::Placement;

/// The allocations one consumer should hold after a write.
#[derive(Debug, Clone)]
pub struct ConsumerWrite {
    pub consumer: String,
    pub project_id: String,
    pub user_id: String,
    /// `None`: do not check (before 1.28). `Some(None)`: the consumer must
    /// be new. `Some(Some(g))`: it must be at generation `g`.
    pub consumer_generation: Option<Option<i64>>,
    /// (provider uuid, resource class, amount); amounts are positive.
    pub allocations: Vec<(String, String, i64)>,
}

/// A consumer's allocations as read back.
#[derive(Debug, Clone)]
pub struct ConsumerView {
    pub consumer: Option<ConsumerRow>,
    /// Provider (with its generation) -> class -> amount.
    pub by_provider: Vec<(ProviderRow, BTreeMap<String, i64>)>,
}

fn cannot_allocate(detail: String) -> AppError {
    AppError::conflict(format!("Unable to allocate inventory: {detail}"))
}

fn consumer_conflict(expected: Option<i64>, got: Option<i64>) -> AppError {
    let show = |g: Option<i64>| {
        g.map(|g| g.to_string())
            .unwrap_or_else(|| "None".to_string())
    };
    AppError::conflict(format!(
        "consumer generation conflict - expected {} but got {}",
        show(got),
        show(expected)
    ))
    .with_code(crate::providers::CONCURRENT_UPDATE)
}

/// Locks the providers by uuid in order; an unknown uuid is the caller's
/// mistake (400), as Placement has it.
async fn lock_providers(
    c: &mut AnyConnection,
    store: &Store,
    uuids: &BTreeSet<String>,
) -> Result<Vec<ProviderRow>, AppError> {
    let mut out = Vec::new();
    for u in uuids {
        let rp = db::lock_provider(c, store, u).await?.ok_or_else(|| {
            AppError::bad_request(format!(
                "Allocation for resource provider '{u}' that does not exist."
            ))
        })?;
        out.push(rp);
    }
    Ok(out)
}

/// Checks every new allocation against the usage as it stands after the
/// write (the consumers' old allocations already removed, the new ones
/// added).
fn check_capacity(snap: &Snapshot, writes: &[ConsumerWrite]) -> Result<(), AppError> {
    for w in writes {
        for (rp, class, amount) in &w.allocations {
            let inv = snap.inventory(rp, class);
            // Usage here already includes this amount: check the remainder.
            let others = snap.used(rp, class) - amount;
            match check_fit(inv, others, *amount) {
                Ok(()) => {}
                Err(Misfit::NoInventory) => {
                    return Err(cannot_allocate(format!(
                        "Inventory for '{class}' on resource provider '{rp}' invalid."
                    )))
                }
                Err(Misfit::Units) => {
                    return Err(cannot_allocate(format!(
                        "Unable to create allocation for '{class}' on resource provider '{rp}'. The requested amount would violate inventory constraints."
                    )))
                }
                Err(Misfit::Capacity) => {
                    return Err(cannot_allocate(format!(
                        "Unable to create allocation for '{class}' on resource provider '{rp}'. The requested amount would exceed the capacity."
                    )))
                }
            }
        }
    }
    Ok(())
}

/// Records (or refreshes) the consumer row, checking its generation.
async fn upsert_consumer(c: &mut AnyConnection, w: &ConsumerWrite) -> Result<(), AppError> {
    let existing = db::get_consumer(c, &w.consumer).await?;
    if let Some(expected) = w.consumer_generation {
        let got = existing.as_ref().map(|e| e.generation);
        if expected != got {
            return Err(consumer_conflict(expected, got));
        }
    }
    match existing {
        None if w.allocations.is_empty() => {}
        None => db::insert_consumer(c, &w.consumer, &w.project_id, &w.user_id).await?,
        Some(_) if w.allocations.is_empty() => db::delete_consumer(c, &w.consumer).await?,
        Some(e) => {
            if !db::update_consumer(c, &w.consumer, e.generation, &w.project_id, &w.user_id).await?
            {
                return Err(consumer_conflict(Some(e.generation), None));
            }
        }
    }
    Ok(())
}

/// Replaces the allocations of every consumer in `writes`, atomically, in
/// the caller's transaction.
pub(crate) async fn write(
    c: &mut AnyConnection,
    store: &Store,
    writes: &[ConsumerWrite],
) -> Result<(), AppError> {
    let mut touched = BTreeSet::new();
    for w in writes {
        for a in db::consumer_allocations(c, &w.consumer).await? {
            touched.insert(a.provider_uuid);
        }
        for (rp, class, amount) in &w.allocations {
            if *amount < 1 {
                return Err(AppError::bad_request(format!(
                    "Invalid amount {amount} for {class}: must be at least 1."
                )));
            }
            if !class_exists(c, class).await? {
                return Err(AppError::bad_request(format!(
                    "Unable to allocate inventory: No such resource class {class}."
                )));
            }
            touched.insert(rp.clone());
        }
    }
    let locked = lock_providers(c, store, &touched).await?;
    for w in writes {
        upsert_consumer(c, w).await?;
        db::delete_consumer_allocations(c, &w.consumer).await?;
        let mut merged: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for (rp, class, amount) in &w.allocations {
            *merged.entry((rp, class)).or_default() += amount;
        }
        for ((rp, class), used) in merged {
            db::insert_allocation(
                c,
                &AllocationRow {
                    consumer_uuid: w.consumer.clone(),
                    provider_uuid: rp.to_string(),
                    resource_class: class.to_string(),
                    used,
                },
            )
            .await?;
        }
    }
    let snap = Snapshot::load(c, locked.clone()).await?;
    check_capacity(&snap, writes)?;
    for rp in &locked {
        if !db::bump_generation(c, &rp.uuid, rp.generation).await? {
            return Err(concurrent_update(&rp.uuid));
        }
    }
    Ok(())
}

impl Placement {
    /// `PUT /allocations/{consumer}` and `POST /allocations`: replaces the
    /// allocations of each consumer, all or nothing.
    pub async fn set_allocations(&self, writes: &[ConsumerWrite]) -> Result<(), AppError> {
        let mut tx = self.store.begin().await?;
        write(&mut tx, &self.store, writes).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(())
    }

    pub async fn consumer_allocations(&self, consumer: &str) -> Result<ConsumerView, AppError> {
        let mut tx = self.store.begin().await?;
        let rows = db::consumer_allocations(&mut tx, consumer).await?;
        let mut by_provider: Vec<(ProviderRow, BTreeMap<String, i64>)> = Vec::new();
        for a in rows {
            if by_provider
                .last()
                .map(|(p, _)| p.uuid != a.provider_uuid)
                .unwrap_or(true)
            {
                let rp = db::get_provider(&mut tx, &a.provider_uuid)
                    .await?
                    .ok_or_else(|| provider_not_found(&a.provider_uuid))?;
                by_provider.push((rp, BTreeMap::new()));
            }
            if let Some((_, m)) = by_provider.last_mut() {
                m.insert(a.resource_class, a.used);
            }
        }
        let consumer = db::get_consumer(&mut tx, consumer).await?;
        Ok(ConsumerView {
            consumer,
            by_provider,
        })
    }

    /// `DELETE /allocations/{consumer}`: 404 when it holds nothing.
    pub async fn delete_allocations(&self, consumer: &str) -> Result<(), AppError> {
        if !self.remove_consumer(consumer).await? {
            return Err(AppError::not_found(format!(
                "No allocations for consumer '{consumer}'"
            )));
        }
        Ok(())
    }

    /// Removes the consumer and its allocations; false when it had none.
    pub(crate) async fn remove_consumer(&self, consumer: &str) -> Result<bool, AppError> {
        let mut tx = self.store.begin().await?;
        let rows = db::consumer_allocations(&mut tx, consumer).await?;
        let touched: BTreeSet<String> = rows.iter().map(|a| a.provider_uuid.clone()).collect();
        let locked = lock_providers(&mut tx, &self.store, &touched).await?;
        let n = db::delete_consumer_allocations(&mut tx, consumer).await?;
        db::delete_consumer(&mut tx, consumer).await?;
        for rp in &locked {
            if !db::bump_generation(&mut tx, &rp.uuid, rp.generation).await? {
                return Err(concurrent_update(&rp.uuid));
            }
        }
        tx.commit().await.map_err(oxistack_store::db_err)?;
        Ok(n > 0)
    }

    /// `GET /resource_providers/{uuid}/allocations`: consumer -> class -> amount.
    pub async fn provider_allocations(
        &self,
        uuid: &str,
    ) -> Result<(ProviderRow, BTreeMap<String, BTreeMap<String, i64>>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = crate::providers::must_get(&mut tx, uuid).await?;
        let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for a in db::provider_allocations(&mut tx, uuid).await? {
            out.entry(a.consumer_uuid)
                .or_default()
                .insert(a.resource_class, a.used);
        }
        Ok((rp, out))
    }

    /// `GET /resource_providers/{uuid}/usages`: every class of the
    /// inventory (0 when unused), plus any class still allocated.
    pub async fn provider_usages(
        &self,
        uuid: &str,
    ) -> Result<(ProviderRow, BTreeMap<String, i64>), AppError> {
        let mut tx = self.store.begin().await?;
        let rp = crate::providers::must_get(&mut tx, uuid).await?;
        let mut out: BTreeMap<String, i64> = db::list_inventories(&mut tx, uuid)
            .await?
            .into_iter()
            .map(|i| (i.resource_class, 0))
            .collect();
        for (class, used) in db::provider_usages(&mut tx, uuid).await? {
            out.insert(class, used);
        }
        Ok((rp, out))
    }

    /// `GET /usages?project_id=&user_id=`.
    pub async fn project_usages(
        &self,
        project: &str,
        user: Option<&str>,
    ) -> Result<BTreeMap<String, i64>, AppError> {
        let mut tx = self.store.begin().await?;
        Ok(db::project_usages(&mut tx, project, user)
            .await?
            .into_iter()
            .collect())
    }
}
