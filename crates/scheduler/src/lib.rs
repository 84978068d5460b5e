//! Placement and the scheduler: resource providers with inventories,
//! allocations per consumer, and the claim that picks a host for a server.
//!
//! The Placement REST API (`api::placement`) calls the methods spread over
//! this crate's modules; the conductor calls the three scheduler entry
//! points here: [`Placement::ensure_host_provider`], [`Placement::claim`],
//! [`Placement::release`]. Both sides share the same tables and the same
//! capacity rule (`snapshot::check_fit`), so a host filled through one is
//! full for the other. Design: docs/design/0005-scheduling.md.

pub mod allocations;
pub mod candidates;
pub mod catalog;
pub mod classes;
pub mod providers;
pub mod snapshot;

use std::sync::Arc;

use oxistack_model::config::Settings;
use oxistack_model::{AppError, AppResult, ConsumerId, ErrorKind, ProjectId, UserId};
use oxistack_store::placement::{self as db, InventoryRow};
use oxistack_store::Store;

pub use allocations::{ConsumerView, ConsumerWrite};
pub use candidates::{Candidate, CandidateRequest};
pub use classes::{Named, TraitFilter};
pub use oxistack_store::placement::{InventoryRow as Inventory, ProviderRow as ResourceProvider};
pub use providers::{InventorySpec, ProviderFilter};

/// What a server needs from a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceRequest {
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
}

/// A host's real capacity, as its agent reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCapacity {
    pub vcpus: i64,
    pub memory_mb: i64,
    pub disk_gb: i64,
}

pub const NO_VALID_HOST: &str = "No valid host was found. There are not enough hosts available.";

pub struct Placement {
    pub store: Store,
    pub settings: Arc<Settings>,
}

impl ResourceRequest {
    /// The (class, amount) pairs to allocate; zero amounts allocate nothing.
    fn wanted(&self) -> Vec<(String, i64)> {
        [
            ("VCPU", self.vcpus),
            ("MEMORY_MB", self.memory_mb),
            ("DISK_GB", self.disk_gb),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(c, n)| (c.to_string(), n))
        .collect()
    }
}

impl Placement {
    pub fn new(store: Store, settings: Arc<Settings>) -> Placement {
        Placement { store, settings }
    }

    /// The VCPU / MEMORY_MB / DISK_GB inventory a host's capacity gives,
    /// with the configured ratios and reservations. A class the host has
    /// none of is left out (Placement refuses a total of 0).
    fn host_inventory(&self, cap: HostCapacity) -> Vec<InventoryRow> {
        let s = &self.settings;
        let now = oxistack_model::time::now();
        [
            ("VCPU", cap.vcpus, 0, s.cpu_allocation_ratio),
            (
                "MEMORY_MB",
                cap.memory_mb,
                s.reserved_host_memory_mb,
                s.ram_allocation_ratio,
            ),
            (
                "DISK_GB",
                cap.disk_gb,
                s.reserved_host_disk_gb,
                s.disk_allocation_ratio,
            ),
        ]
        .into_iter()
        .filter(|(_, total, _, _)| *total > 0)
        .map(|(class, total, reserved, ratio)| InventoryRow {
            resource_class: class.to_string(),
            total,
            // A host smaller than its reservation offers nothing, rather
            // than an inventory Placement would call invalid.
            reserved: reserved.clamp(0, total),
            min_unit: 1,
            max_unit: total,
            step_size: 1,
            allocation_ratio: ratio,
            updated_at: now,
        })
        .collect()
    }

    /// Creates or updates the compute host's resource provider and its
    /// VCPU / MEMORY_MB / DISK_GB inventory (with the configured allocation
    /// ratios and reservations). The provider is found by name, so its uuid
    /// stays the same across restarts; allocations are kept and the
    /// generation bumped on every update.
    pub async fn ensure_host_provider(&self, host_name: &str, cap: HostCapacity) -> AppResult<()> {
        // Two agents' first reports can race on the unique name: the loser
        // retries and finds the winner's row.
        let mut last = None;
        for _ in 0..3 {
            match self.try_ensure_host_provider(host_name, cap).await {
                Err(e) if e.kind == ErrorKind::Conflict => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| AppError::internal("ensure_host_provider: retries exhausted")))
    }

    async fn try_ensure_host_provider(&self, host_name: &str, cap: HostCapacity) -> AppResult<()> {
        let mut tx = self.store.begin().await?;
        let rp = match db::get_provider_by_name(&mut tx, host_name).await? {
            Some(rp) => db::lock_provider(&mut tx, &self.store, &rp.uuid)
                .await?
                .ok_or_else(|| AppError::conflict("provider deleted meanwhile"))?,
            None => {
                let uuid = uuid::Uuid::new_v4().to_string();
                db::insert_provider(&mut tx, &uuid, host_name, None, &uuid).await?;
                providers::must_get(&mut tx, &uuid).await?
            }
        };
        let wanted = self.host_inventory(cap);
        for old in db::list_inventories(&mut tx, &rp.uuid).await? {
            let kept = wanted
                .iter()
                .any(|w| w.resource_class == old.resource_class);
            // A class still allocated stays, so no allocation is orphaned.
            if !kept && !db::class_in_use(&mut tx, Some(&rp.uuid), &old.resource_class).await? {
                db::delete_inventory(&mut tx, &rp.uuid, &old.resource_class).await?;
            }
        }
        for inv in &wanted {
            db::upsert_inventory(&mut tx, &rp.uuid, inv).await?;
        }
        if !db::bump_generation(&mut tx, &rp.uuid, rp.generation).await? {
            return Err(providers::concurrent_update(&rp.uuid));
        }
        tx.commit().await.map_err(oxistack_store::db_err)?;
        tracing::info!(host = host_name, provider = %rp.uuid, ?cap, "host resource provider up to date");
        Ok(())
    }

    /// Picks a host with room and records the consumer's allocations there,
    /// atomically. Idempotent: a consumer that already holds allocations gets
    /// its host back. No room anywhere is `NoValidHost`.
    ///
    /// Every provider is locked for the transaction, so claims are serialised
    /// and each sees the usage the previous one wrote: concurrent claims can
    /// never overcommit. Among the hosts with room, the one with the most
    /// free RAM wins (spread), ties broken by name.
    pub async fn claim(
        &self,
        consumer: ConsumerId,
        project: ProjectId,
        user: UserId,
        req: ResourceRequest,
    ) -> AppResult<String> {
        let consumer = consumer.to_string();
        let mut tx = self.store.begin().await?;
        let providers = db::lock_all_providers(&mut tx, &self.store).await?;
        if let Some(held) = db::consumer_allocations(&mut tx, &consumer).await?.first() {
            let host = providers
                .iter()
                .find(|p| p.uuid == held.provider_uuid)
                .map(|p| p.name.clone())
                .ok_or_else(|| {
                    AppError::internal(format!(
                        "allocation on unknown provider {}",
                        held.provider_uuid
                    ))
                })?;
            return Ok(host);
        }
        let wanted = req.wanted();
        let snap = snapshot::Snapshot::load(&mut tx, providers).await?;
        let chosen = snap
            .providers
            .iter()
            .filter(|p| snap.fits_all(&p.uuid, &wanted))
            // Hosts without a MEMORY_MB inventory can still take a request
            // for none; they rank last.
            .max_by(|a, b| {
                snap.free(&a.uuid, "MEMORY_MB")
                    .cmp(&snap.free(&b.uuid, "MEMORY_MB"))
                    .then_with(|| b.name.cmp(&a.name))
            })
            .cloned()
            .ok_or_else(|| {
                AppError::no_valid_host(NO_VALID_HOST)
                    .with_context(format!("consumer {consumer} wants {wanted:?}"))
            })?;
        let write = ConsumerWrite {
            consumer: consumer.clone(),
            project_id: project.to_string(),
            user_id: user.to_string(),
            consumer_generation: None,
            allocations: wanted
                .into_iter()
                .map(|(c, n)| (chosen.uuid.clone(), c, n))
                .collect(),
        };
        allocations::write(&mut tx, &self.store, &[write]).await?;
        tx.commit().await.map_err(oxistack_store::db_err)?;
        tracing::info!(consumer = %consumer, host = %chosen.name, ?req, "claimed resources");
        Ok(chosen.name)
    }

    /// Removes every allocation of the consumer. Idempotent.
    pub async fn release(&self, consumer: ConsumerId) -> AppResult<()> {
        if self.remove_consumer(&consumer.to_string()).await? {
            tracing::info!(consumer = %consumer, "released resources");
        }
        Ok(())
    }
}
