//! Persistence of sagas (see `conductor::saga`): one row per saga, updated
//! after every step so a restarted conductor resumes where it stopped.

use oxistack_model::{AppResult, SagaId};
use serde_json::Value;

use crate::{db_err, ts, RowExt, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaState {
    Running,
    Unwinding,
    Done,
    Failed,
}

impl SagaState {
    pub fn as_str(&self) -> &'static str {
        match self {
            SagaState::Running => "running",
            SagaState::Unwinding => "unwinding",
            SagaState::Done => "done",
            SagaState::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "running" => SagaState::Running,
            "unwinding" => SagaState::Unwinding,
            "done" => SagaState::Done,
            _ => SagaState::Failed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SagaRecord {
    pub id: SagaId,
    pub kind: String,
    pub target_id: String,
    pub state: SagaState,
    pub step: i64,
    pub params: Value,
    pub outputs: Value,
    pub error: Option<String>,
}

impl Store {
    pub async fn saga_insert(&self, r: &SagaRecord) -> AppResult<()> {
        let now = ts(&oxistack_model::time::now());
        sqlx::query(
            "INSERT INTO sagas (id, kind, target_id, state, step, params, outputs, error, created_at, updated_at)
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$9)",
        )
        .bind(r.id.to_string())
        .bind(&r.kind)
        .bind(&r.target_id)
        .bind(r.state.as_str())
        .bind(r.step)
        .bind(r.params.to_string())
        .bind(r.outputs.to_string())
        .bind(&r.error)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    pub async fn saga_save(&self, r: &SagaRecord) -> AppResult<()> {
        sqlx::query(
            "UPDATE sagas SET state = $1, step = $2, outputs = $3, error = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(r.state.as_str())
        .bind(r.step)
        .bind(r.outputs.to_string())
        .bind(&r.error)
        .bind(ts(&oxistack_model::time::now()))
        .bind(r.id.to_string())
        .execute(self.pool())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Sagas a crash left running or unwinding.
    pub async fn sagas_unfinished(&self) -> AppResult<Vec<SagaRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM sagas WHERE state IN ('running', 'unwinding') ORDER BY created_at",
        )
        .fetch_all(self.pool())
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| SagaRecord {
                id: r.text("id").parse().unwrap_or_default(),
                kind: r.text("kind"),
                target_id: r.text("target_id"),
                state: SagaState::parse(&r.text("state")),
                step: r.int("step"),
                params: r.json("params"),
                outputs: r.json("outputs"),
                error: r.opt_text("error"),
            })
            .collect())
    }

    pub async fn saga_get(&self, id: &SagaId) -> AppResult<Option<SagaRecord>> {
        let row = sqlx::query("SELECT * FROM sagas WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| SagaRecord {
            id: *id,
            kind: r.text("kind"),
            target_id: r.text("target_id"),
            state: SagaState::parse(&r.text("state")),
            step: r.int("step"),
            params: r.json("params"),
            outputs: r.json("outputs"),
            error: r.opt_text("error"),
        }))
    }
}

impl Store {
    /// Records a reconciler's last run, for admins.
    pub async fn reconciler_report(&self, name: &str, ok: bool, summary: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM reconciler_runs WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO reconciler_runs (name, last_run_at, ok, summary) VALUES ($1,$2,$3,$4)",
        )
        .bind(name)
        .bind(ts(&oxistack_model::time::now()))
        .bind(ok as i64)
        .bind(summary)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}

impl Store {
    /// The newest saga of `kind` on `target` that finished its work.
    pub async fn saga_latest_done(
        &self,
        kind: &str,
        target: &str,
    ) -> AppResult<Option<SagaRecord>> {
        let row = sqlx::query(
            "SELECT id FROM sagas WHERE kind = $1 AND target_id = $2 AND state = 'done'
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(kind)
        .bind(target)
        .fetch_optional(self.pool())
        .await
        .map_err(db_err)?;
        match row {
            Some(r) => {
                let id: SagaId = r.text("id").parse().unwrap_or_default();
                self.saga_get(&id).await
            }
            None => Ok(None),
        }
    }
}

impl Store {
    /// A value of the `secrets` table, if set.
    pub async fn secret_get(&self, name: &str) -> AppResult<Option<String>> {
        let v: Option<String> = sqlx::query_scalar("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(db_err)?;
        Ok(v)
    }

    /// Sets a value of the `secrets` table (replacing any).
    pub async fn secret_put(&self, name: &str, value: &str) -> AppResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(value)
            .bind(ts(&oxistack_model::time::now()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }
}
