//! Hypervisor hosts: one row per agent, with the facts it last reported.

use oxistack_model::time::Timestamp;
use oxistack_model::AppResult;
use serde_json::Value;

use crate::{db_err, parse_ts, ts, RowExt, Store};

#[derive(Debug, Clone)]
pub struct HostRecord {
    pub id: String,
    /// 1-based position in creation order: Nova's integer hypervisor id
    /// (microversions before 2.53).
    pub seq: i64,
    pub name: String,
    pub virt_type: String,
    pub facts: Value,
    pub status: String,
    pub last_seen: Timestamp,
    pub created_at: Timestamp,
}

impl Store {
    /// Records (or refreshes) a host and what its agent reports.
    pub async fn host_upsert(&self, name: &str, virt_type: &str, facts: &Value) -> AppResult<()> {
        let now = ts(&oxistack_model::time::now());
        let mut tx = self.begin().await?;
        let updated = sqlx::query("UPDATE hosts SET virt_type = $1, facts = $2, status = 'up', last_seen = $3 WHERE name = $4")
            .bind(virt_type)
            .bind(facts.to_string())
            .bind(&now)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        if updated.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO hosts (id, name, virt_type, facts, status, last_seen, created_at)
                 VALUES ($1, $2, $3, $4, 'up', $5, $5)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(name)
            .bind(virt_type)
            .bind(facts.to_string())
            .bind(&now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)
    }

    pub async fn host_list(&self) -> AppResult<Vec<HostRecord>> {
        let rows = sqlx::query("SELECT * FROM hosts ORDER BY created_at, id")
            .fetch_all(self.pool())
            .await
            .map_err(db_err)?;
        Ok(rows
            .iter()
            .enumerate()
            .map(|(i, r)| HostRecord {
                id: r.text("id"),
                seq: i as i64 + 1,
                name: r.text("name"),
                virt_type: r.text("virt_type"),
                facts: r.json("facts"),
                status: r.text("status"),
                last_seen: parse_ts(&r.text("last_seen")),
                created_at: parse_ts(&r.text("created_at")),
            })
            .collect())
    }
}
