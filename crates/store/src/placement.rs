//! Store queries for the placement service: resource providers, inventories,
//! consumers, allocations, custom resource classes and traits, aggregates.
//!
//! Every function runs on a connection the caller holds (usually a
//! transaction), so the scheduler can check capacity and write allocations
//! under one lock. Placement is an admin API: none of these rows belong to a
//! tenant, so there is no `Scope` here; consumers carry their project only
//! for usage reports.

use oxistack_model::time::Timestamp;
use oxistack_model::AppError;
use sqlx::AnyConnection;

use crate::{db_err, parse_ts, ts, RowExt, Store};

/// A resource provider row.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderRow {
    pub uuid: String,
    pub name: String,
    pub generation: i64,
    pub parent_provider_uuid: Option<String>,
    pub root_provider_uuid: String,
    pub updated_at: Timestamp,
}

/// One resource class of a provider's inventory.
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRow {
    pub resource_class: String,
    pub total: i64,
    pub reserved: i64,
    pub min_unit: i64,
    pub max_unit: i64,
    pub step_size: i64,
    pub allocation_ratio: f64,
    pub updated_at: Timestamp,
}

/// One (consumer, provider, class) allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRow {
    pub consumer_uuid: String,
    pub provider_uuid: String,
    pub resource_class: String,
    pub used: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRow {
    pub uuid: String,
    pub project_id: String,
    pub user_id: String,
    pub generation: i64,
}

/// A named row with timestamps (custom resource class or trait).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedRow {
    pub name: String,
    pub updated_at: Timestamp,
}

fn now() -> String {
    ts(&oxistack_model::time::now())
}

const PROVIDER_COLS: &str =
    "uuid, name, generation, parent_provider_uuid, root_provider_uuid, updated_at";

fn provider(r: &sqlx::any::AnyRow) -> ProviderRow {
    ProviderRow {
        uuid: r.text("uuid"),
        name: r.text("name"),
        generation: r.int("generation"),
        parent_provider_uuid: r.opt_text("parent_provider_uuid"),
        root_provider_uuid: r.text("root_provider_uuid"),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

// ---- resource providers -------------------------------------------------

pub async fn insert_provider(
    c: &mut AnyConnection,
    uuid: &str,
    name: &str,
    parent: Option<&str>,
    root: &str,
) -> Result<(), AppError> {
    let t = now();
    sqlx::query(
        "INSERT INTO resource_providers (uuid, name, generation, parent_provider_uuid, \
         root_provider_uuid, created_at, updated_at) VALUES ($1, $2, 0, $3, $4, $5, $5)",
    )
    .bind(uuid)
    .bind(name)
    .bind(parent)
    .bind(root)
    .bind(&t)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn get_provider(
    c: &mut AnyConnection,
    uuid: &str,
) -> Result<Option<ProviderRow>, AppError> {
    let row = sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM resource_providers WHERE uuid = $1"
    ))
    .bind(uuid)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    Ok(row.as_ref().map(provider))
}

pub async fn get_provider_by_name(
    c: &mut AnyConnection,
    name: &str,
) -> Result<Option<ProviderRow>, AppError> {
    let row = sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM resource_providers WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    Ok(row.as_ref().map(provider))
}

/// Every provider, by name. The scheduler filters in memory: a cloud has
/// hundreds of hosts, not millions.
pub async fn list_providers(c: &mut AnyConnection) -> Result<Vec<ProviderRow>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM resource_providers ORDER BY name, uuid"
    ))
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(provider).collect())
}

/// Locks every provider row until the transaction ends (PostgreSQL; SQLite
/// has one connection and serialises writers). Rows are locked in uuid order
/// so two lockers never deadlock. Returns the providers as locked.
pub async fn lock_all_providers(
    c: &mut AnyConnection,
    store: &Store,
) -> Result<Vec<ProviderRow>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM resource_providers ORDER BY uuid{}",
        store.for_update()
    ))
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(provider).collect())
}

/// Locks one provider row until the transaction ends.
pub async fn lock_provider(
    c: &mut AnyConnection,
    store: &Store,
    uuid: &str,
) -> Result<Option<ProviderRow>, AppError> {
    let row = sqlx::query(&format!(
        "SELECT {PROVIDER_COLS} FROM resource_providers WHERE uuid = $1{}",
        store.for_update()
    ))
    .bind(uuid)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    Ok(row.as_ref().map(provider))
}

/// Bumps the generation if it is still `expected`. False means someone else
/// changed the provider first.
pub async fn bump_generation(
    c: &mut AnyConnection,
    uuid: &str,
    expected: i64,
) -> Result<bool, AppError> {
    let r = sqlx::query(
        "UPDATE resource_providers SET generation = generation + 1, updated_at = $3 \
         WHERE uuid = $1 AND generation = $2",
    )
    .bind(uuid)
    .bind(expected)
    .bind(now())
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

/// Renames / re-parents a provider. Placement does not bump the generation
/// for this (only inventory, traits, aggregates and allocations do).
pub async fn update_provider(
    c: &mut AnyConnection,
    uuid: &str,
    name: &str,
    parent: Option<&str>,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE resource_providers SET name = $2, parent_provider_uuid = $3, updated_at = $4 WHERE uuid = $1",
    )
    .bind(uuid)
    .bind(name)
    .bind(parent)
    .bind(now())
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Moves a whole tree under a new root (a root provider got a parent).
pub async fn set_root(
    c: &mut AnyConnection,
    old_root: &str,
    new_root: &str,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE resource_providers SET root_provider_uuid = $2 WHERE root_provider_uuid = $1",
    )
    .bind(old_root)
    .bind(new_root)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn delete_provider(c: &mut AnyConnection, uuid: &str) -> Result<bool, AppError> {
    let r = sqlx::query("DELETE FROM resource_providers WHERE uuid = $1")
        .bind(uuid)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

pub async fn count_children(c: &mut AnyConnection, uuid: &str) -> Result<i64, AppError> {
    sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM resource_providers WHERE parent_provider_uuid = $1",
    )
    .bind(uuid)
    .fetch_one(c)
    .await
    .map_err(db_err)
}

// ---- inventories ----------------------------------------------------------

fn inventory(r: &sqlx::any::AnyRow) -> InventoryRow {
    InventoryRow {
        resource_class: r.text("resource_class"),
        total: r.int("total"),
        reserved: r.int("reserved"),
        min_unit: r.int("min_unit"),
        max_unit: r.int("max_unit"),
        step_size: r.int("step_size"),
        allocation_ratio: r.float("allocation_ratio"),
        updated_at: parse_ts(&r.text("updated_at")),
    }
}

const INVENTORY_COLS: &str =
    "provider_uuid, resource_class, total, reserved, min_unit, max_unit, step_size, allocation_ratio, updated_at";

pub async fn list_inventories(
    c: &mut AnyConnection,
    uuid: &str,
) -> Result<Vec<InventoryRow>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT {INVENTORY_COLS} FROM inventories WHERE provider_uuid = $1 ORDER BY resource_class"
    ))
    .bind(uuid)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(inventory).collect())
}

/// Every inventory of every provider, as (provider uuid, inventory).
pub async fn all_inventories(
    c: &mut AnyConnection,
) -> Result<Vec<(String, InventoryRow)>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT {INVENTORY_COLS} FROM inventories ORDER BY provider_uuid, resource_class"
    ))
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| (r.text("provider_uuid"), inventory(r)))
        .collect())
}

/// Inserts or replaces one class of a provider's inventory.
pub async fn upsert_inventory(
    c: &mut AnyConnection,
    uuid: &str,
    inv: &InventoryRow,
) -> Result<(), AppError> {
    let t = now();
    sqlx::query(
        "INSERT INTO inventories (provider_uuid, resource_class, total, reserved, min_unit, max_unit, \
         step_size, allocation_ratio, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (provider_uuid, resource_class) DO UPDATE SET total = $3, reserved = $4, \
         min_unit = $5, max_unit = $6, step_size = $7, allocation_ratio = $8, updated_at = $9",
    )
    .bind(uuid)
    .bind(&inv.resource_class)
    .bind(inv.total)
    .bind(inv.reserved)
    .bind(inv.min_unit)
    .bind(inv.max_unit)
    .bind(inv.step_size)
    .bind(inv.allocation_ratio)
    .bind(&t)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn delete_inventory(
    c: &mut AnyConnection,
    uuid: &str,
    class: &str,
) -> Result<bool, AppError> {
    let r = sqlx::query("DELETE FROM inventories WHERE provider_uuid = $1 AND resource_class = $2")
        .bind(uuid)
        .bind(class)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

/// True when any provider has inventory of the class.
pub async fn class_has_inventory(c: &mut AnyConnection, class: &str) -> Result<bool, AppError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM inventories WHERE resource_class = $1")
        .bind(class)
        .fetch_one(c)
        .await
        .map_err(db_err)?;
    Ok(n > 0)
}

// ---- allocations and usages ----------------------------------------------

fn allocation(r: &sqlx::any::AnyRow) -> AllocationRow {
    AllocationRow {
        consumer_uuid: r.text("consumer_uuid"),
        provider_uuid: r.text("provider_uuid"),
        resource_class: r.text("resource_class"),
        used: r.int("used"),
    }
}

pub async fn consumer_allocations(
    c: &mut AnyConnection,
    consumer: &str,
) -> Result<Vec<AllocationRow>, AppError> {
    let rows = sqlx::query(
        "SELECT consumer_uuid, provider_uuid, resource_class, used FROM allocations \
         WHERE consumer_uuid = $1 ORDER BY provider_uuid, resource_class",
    )
    .bind(consumer)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(allocation).collect())
}

pub async fn provider_allocations(
    c: &mut AnyConnection,
    uuid: &str,
) -> Result<Vec<AllocationRow>, AppError> {
    let rows = sqlx::query(
        "SELECT consumer_uuid, provider_uuid, resource_class, used FROM allocations \
         WHERE provider_uuid = $1 ORDER BY consumer_uuid, resource_class",
    )
    .bind(uuid)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows.iter().map(allocation).collect())
}

/// Usage of every provider, as (provider uuid, class, used).
pub async fn all_usages(c: &mut AnyConnection) -> Result<Vec<(String, String, i64)>, AppError> {
    let rows = sqlx::query(
        "SELECT provider_uuid, resource_class, CAST(SUM(used) AS BIGINT) AS used FROM allocations \
         GROUP BY provider_uuid, resource_class",
    )
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| (r.text("provider_uuid"), r.text("resource_class"), sum(r)))
        .collect())
}

/// `SUM` is NUMERIC on PostgreSQL: read it as text-free integer either way.
fn sum(r: &sqlx::any::AnyRow) -> i64 {
    use sqlx::Row;
    r.try_get::<i64, _>("used")
        .or_else(|_| r.try_get::<f64, _>("used").map(|f| f as i64))
        .or_else(|_| {
            r.try_get::<String, _>("used")
                .map(|s| s.parse::<f64>().unwrap_or(0.0) as i64)
        })
        .unwrap_or(0)
}

pub async fn provider_usages(
    c: &mut AnyConnection,
    uuid: &str,
) -> Result<Vec<(String, i64)>, AppError> {
    let rows = sqlx::query(
        "SELECT resource_class, CAST(SUM(used) AS BIGINT) AS used FROM allocations \
         WHERE provider_uuid = $1 GROUP BY resource_class ORDER BY resource_class",
    )
    .bind(uuid)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| (r.text("resource_class"), sum(r)))
        .collect())
}

/// Usage summed over the consumers of a project (and user, if given).
pub async fn project_usages(
    c: &mut AnyConnection,
    project: &str,
    user: Option<&str>,
) -> Result<Vec<(String, i64)>, AppError> {
    let rows = sqlx::query(
        "SELECT a.resource_class, CAST(SUM(a.used) AS BIGINT) AS used FROM allocations a \
         JOIN placement_consumers pc ON pc.uuid = a.consumer_uuid \
         WHERE pc.project_id = $1 AND ($2 IS NULL OR pc.user_id = $2) \
         GROUP BY a.resource_class ORDER BY a.resource_class",
    )
    .bind(project)
    .bind(user)
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| (r.text("resource_class"), sum(r)))
        .collect())
}

pub async fn insert_allocation(c: &mut AnyConnection, a: &AllocationRow) -> Result<(), AppError> {
    let t = now();
    sqlx::query(
        "INSERT INTO allocations (consumer_uuid, provider_uuid, resource_class, used, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&a.consumer_uuid)
    .bind(&a.provider_uuid)
    .bind(&a.resource_class)
    .bind(a.used)
    .bind(&t)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

pub async fn delete_consumer_allocations(
    c: &mut AnyConnection,
    consumer: &str,
) -> Result<u64, AppError> {
    let r = sqlx::query("DELETE FROM allocations WHERE consumer_uuid = $1")
        .bind(consumer)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected())
}

/// True when any consumer holds the class on the provider (or on any
/// provider when `uuid` is `None`).
pub async fn class_in_use(
    c: &mut AnyConnection,
    uuid: Option<&str>,
    class: &str,
) -> Result<bool, AppError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM allocations WHERE resource_class = $2 AND ($1 IS NULL OR provider_uuid = $1)",
    )
    .bind(uuid)
    .bind(class)
    .fetch_one(c)
    .await
    .map_err(db_err)?;
    Ok(n > 0)
}

// ---- consumers -------------------------------------------------------------

pub async fn get_consumer(
    c: &mut AnyConnection,
    uuid: &str,
) -> Result<Option<ConsumerRow>, AppError> {
    let row = sqlx::query(
        "SELECT uuid, project_id, user_id, generation FROM placement_consumers WHERE uuid = $1",
    )
    .bind(uuid)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    Ok(row.map(|r| ConsumerRow {
        uuid: r.text("uuid"),
        project_id: r.text("project_id"),
        user_id: r.text("user_id"),
        generation: r.int("generation"),
    }))
}

pub async fn insert_consumer(
    c: &mut AnyConnection,
    uuid: &str,
    project: &str,
    user: &str,
) -> Result<(), AppError> {
    let t = now();
    sqlx::query(
        "INSERT INTO placement_consumers (uuid, project_id, user_id, generation, created_at, updated_at) \
         VALUES ($1, $2, $3, 0, $4, $4)",
    )
    .bind(uuid)
    .bind(project)
    .bind(user)
    .bind(&t)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Updates the consumer's owner and bumps its generation if it is still
/// `expected`.
pub async fn update_consumer(
    c: &mut AnyConnection,
    uuid: &str,
    expected: i64,
    project: &str,
    user: &str,
) -> Result<bool, AppError> {
    let r = sqlx::query(
        "UPDATE placement_consumers SET project_id = $3, user_id = $4, generation = generation + 1, \
         updated_at = $5 WHERE uuid = $1 AND generation = $2",
    )
    .bind(uuid)
    .bind(expected)
    .bind(project)
    .bind(user)
    .bind(now())
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(r.rows_affected() == 1)
}

pub async fn delete_consumer(c: &mut AnyConnection, uuid: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM placement_consumers WHERE uuid = $1")
        .bind(uuid)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(())
}

// ---- custom resource classes and traits ----------------------------------

/// `table` is one of our own constants (`resource_classes`, `traits`), never input.
async fn list_named(c: &mut AnyConnection, table: &'static str) -> Result<Vec<NamedRow>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT name, updated_at FROM {table} ORDER BY name"
    ))
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| NamedRow {
            name: r.text("name"),
            updated_at: parse_ts(&r.text("updated_at")),
        })
        .collect())
}

async fn get_named(
    c: &mut AnyConnection,
    table: &'static str,
    name: &str,
) -> Result<Option<NamedRow>, AppError> {
    let row = sqlx::query(&format!(
        "SELECT name, updated_at FROM {table} WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(c)
    .await
    .map_err(db_err)?;
    Ok(row.map(|r| NamedRow {
        name: r.text("name"),
        updated_at: parse_ts(&r.text("updated_at")),
    }))
}

async fn insert_named(
    c: &mut AnyConnection,
    table: &'static str,
    name: &str,
) -> Result<(), AppError> {
    let t = now();
    sqlx::query(&format!(
        "INSERT INTO {table} (name, created_at, updated_at) VALUES ($1, $2, $2)"
    ))
    .bind(name)
    .bind(&t)
    .execute(c)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn delete_named(
    c: &mut AnyConnection,
    table: &'static str,
    name: &str,
) -> Result<bool, AppError> {
    let r = sqlx::query(&format!("DELETE FROM {table} WHERE name = $1"))
        .bind(name)
        .execute(c)
        .await
        .map_err(db_err)?;
    Ok(r.rows_affected() > 0)
}

pub async fn list_custom_classes(c: &mut AnyConnection) -> Result<Vec<NamedRow>, AppError> {
    list_named(c, "resource_classes").await
}
pub async fn get_custom_class(
    c: &mut AnyConnection,
    name: &str,
) -> Result<Option<NamedRow>, AppError> {
    get_named(c, "resource_classes", name).await
}
pub async fn insert_custom_class(c: &mut AnyConnection, name: &str) -> Result<(), AppError> {
    insert_named(c, "resource_classes", name).await
}
pub async fn delete_custom_class(c: &mut AnyConnection, name: &str) -> Result<bool, AppError> {
    delete_named(c, "resource_classes", name).await
}

/// Renames a custom class everywhere it is referenced.
pub async fn rename_custom_class(
    c: &mut AnyConnection,
    old: &str,
    new: &str,
) -> Result<(), AppError> {
    let t = now();
    sqlx::query("UPDATE resource_classes SET name = $2, updated_at = $3 WHERE name = $1")
        .bind(old)
        .bind(new)
        .bind(&t)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    for table in ["inventories", "allocations"] {
        sqlx::query(&format!(
            "UPDATE {table} SET resource_class = $2 WHERE resource_class = $1"
        ))
        .bind(old)
        .bind(new)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

pub async fn list_custom_traits(c: &mut AnyConnection) -> Result<Vec<NamedRow>, AppError> {
    list_named(c, "traits").await
}
pub async fn get_custom_trait(
    c: &mut AnyConnection,
    name: &str,
) -> Result<Option<NamedRow>, AppError> {
    get_named(c, "traits", name).await
}
pub async fn insert_custom_trait(c: &mut AnyConnection, name: &str) -> Result<(), AppError> {
    insert_named(c, "traits", name).await
}
pub async fn delete_custom_trait(c: &mut AnyConnection, name: &str) -> Result<bool, AppError> {
    delete_named(c, "traits", name).await
}

/// Names of every trait any provider has.
pub async fn associated_traits(c: &mut AnyConnection) -> Result<Vec<String>, AppError> {
    sqlx::query_scalar("SELECT DISTINCT trait FROM resource_provider_traits ORDER BY trait")
        .fetch_all(c)
        .await
        .map_err(db_err)
}

// ---- provider traits and aggregates ----------------------------------------

/// `table`/`col` are our own constants.
async fn provider_set(
    c: &mut AnyConnection,
    table: &'static str,
    col: &'static str,
    uuid: &str,
) -> Result<Vec<String>, AppError> {
    sqlx::query_scalar(&format!(
        "SELECT {col} FROM {table} WHERE provider_uuid = $1 ORDER BY {col}"
    ))
    .bind(uuid)
    .fetch_all(c)
    .await
    .map_err(db_err)
}

async fn all_provider_sets(
    c: &mut AnyConnection,
    table: &'static str,
    col: &'static str,
) -> Result<Vec<(String, String)>, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT provider_uuid, {col} AS v FROM {table} ORDER BY provider_uuid, {col}"
    ))
    .fetch_all(c)
    .await
    .map_err(db_err)?;
    Ok(rows
        .iter()
        .map(|r| (r.text("provider_uuid"), r.text("v")))
        .collect())
}

async fn replace_provider_set(
    c: &mut AnyConnection,
    table: &'static str,
    col: &'static str,
    uuid: &str,
    values: &[String],
) -> Result<(), AppError> {
    sqlx::query(&format!("DELETE FROM {table} WHERE provider_uuid = $1"))
        .bind(uuid)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    for v in values {
        sqlx::query(&format!(
            "INSERT INTO {table} (provider_uuid, {col}) VALUES ($1, $2)"
        ))
        .bind(uuid)
        .bind(v)
        .execute(&mut *c)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

pub async fn provider_traits(c: &mut AnyConnection, uuid: &str) -> Result<Vec<String>, AppError> {
    provider_set(c, "resource_provider_traits", "trait", uuid).await
}
pub async fn all_provider_traits(c: &mut AnyConnection) -> Result<Vec<(String, String)>, AppError> {
    all_provider_sets(c, "resource_provider_traits", "trait").await
}
pub async fn set_provider_traits(
    c: &mut AnyConnection,
    uuid: &str,
    traits: &[String],
) -> Result<(), AppError> {
    replace_provider_set(c, "resource_provider_traits", "trait", uuid, traits).await
}
pub async fn provider_aggregates(
    c: &mut AnyConnection,
    uuid: &str,
) -> Result<Vec<String>, AppError> {
    provider_set(c, "resource_provider_aggregates", "aggregate_uuid", uuid).await
}
pub async fn all_provider_aggregates(
    c: &mut AnyConnection,
) -> Result<Vec<(String, String)>, AppError> {
    all_provider_sets(c, "resource_provider_aggregates", "aggregate_uuid").await
}
pub async fn set_provider_aggregates(
    c: &mut AnyConnection,
    uuid: &str,
    aggs: &[String],
) -> Result<(), AppError> {
    replace_provider_set(
        c,
        "resource_provider_aggregates",
        "aggregate_uuid",
        uuid,
        aggs,
    )
    .await
}
