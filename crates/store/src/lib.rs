//! The store: every table OxiStack keeps, on SQLite (embedded default) or
//! PostgreSQL (many controllers), through one portable SQL dialect.
//!
//! Portability rules (see docs/design/0002-one-schema-two-engines.md):
//! - placeholders are `$1, $2, …` (both engines accept them);
//! - columns are TEXT, BIGINT or DOUBLE PRECISION only; booleans are BIGINT 0/1,
//!   timestamps are RFC 3339 TEXT in UTC with microseconds (so they sort),
//!   JSON documents are TEXT;
//! - no engine-specific functions in queries; `Store::for_update()` gives the
//!   row-lock suffix where PostgreSQL needs one.
//!
//! Every query on a tenant resource takes a [`Scope`]: a project-scoped caller
//! can only ever see or touch its own rows, enforced here and not in handlers.

pub mod compute;
pub mod hosts;
pub mod identity;
pub mod images;
pub mod migrations;
pub mod network;
pub mod placement;
pub mod sagas;
pub mod test_db;

use std::str::FromStr;
use std::time::Duration;

use oxistack_model::AppError;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use sqlx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub use oxistack_model::Scope;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

/// Maps a database error to the application error, keeping the detail for the log.
pub fn db_err(e: sqlx::Error) -> AppError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return AppError::conflict("The resource already exists.")
                .with_context(format!("database: {e}"));
        }
    }
    AppError::internal(format!("database: {e}"))
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies every
    /// pending migration.
    pub async fn open(url: &str) -> Result<Store, AppError> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            return Err(AppError::bad_request(format!(
                "unsupported database URL {url:?}: use sqlite://PATH or postgres://…"
            )));
        };
        let url = match engine {
            Engine::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url)
            .map_err(|e| AppError::bad_request(format!("bad database URL: {e}")))?;
        let pool = match engine {
            // One connection: SQLite serialises writers anyway, and a single
            // connection never meets "database is locked" on upgrade from a
            // read to a write transaction.
            Engine::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(60))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute("PRAGMA journal_mode=WAL").await?;
                            conn.execute("PRAGMA synchronous=NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys=ON").await?;
                            conn.execute("PRAGMA busy_timeout=10000").await?;
                            Ok(())
                        })
                    })
                    .connect_with(opts)
                    .await
            }
            Engine::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
            }
        }
        .map_err(|e| AppError::unavailable("database unreachable").with_context(e.to_string()))?;
        let store = Store { pool, engine };
        migrations::apply(&store).await?;
        Ok(store)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Suffix that locks the selected rows until the transaction ends
    /// (PostgreSQL). SQLite locks the whole database on the first write, and
    /// OxiStack keeps one connection to it, so it needs none.
    pub fn for_update(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "",
            Engine::Postgres => " FOR UPDATE",
        }
    }

    pub async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, AppError> {
        self.pool.begin().await.map_err(db_err)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The row of `table` with this `id`, if the scope may see it (the
    /// table has `id` and `project_id` columns). `table` is one of ours,
    /// never user input.
    pub async fn scoped_row(
        &self,
        table: &'static str,
        id: &str,
        scope: Scope,
    ) -> Result<Option<AnyRow>, AppError> {
        sqlx::query(&format!(
            "SELECT * FROM {table} WHERE id = $1 AND ($2 IS NULL OR project_id = $2)"
        ))
        .bind(id)
        .bind(scope.project())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)
    }

    /// Every row of `table` the scope may see, oldest first.
    pub async fn scoped_rows(
        &self,
        table: &'static str,
        scope: Scope,
    ) -> Result<Vec<AnyRow>, AppError> {
        sqlx::query(&format!(
            "SELECT * FROM {table} WHERE ($1 IS NULL OR project_id = $1) ORDER BY created_at, id"
        ))
        .bind(scope.project())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)
    }
}

/// Reads helpers for rows, so queries stay short.
pub trait RowExt {
    fn text(&self, col: &str) -> String;
    fn opt_text(&self, col: &str) -> Option<String>;
    fn int(&self, col: &str) -> i64;
    fn opt_int(&self, col: &str) -> Option<i64>;
    fn flag(&self, col: &str) -> bool;
    fn float(&self, col: &str) -> f64;
    fn json(&self, col: &str) -> serde_json::Value;
}

impl RowExt for AnyRow {
    fn text(&self, col: &str) -> String {
        self.try_get::<String, _>(col).unwrap_or_default()
    }
    fn opt_text(&self, col: &str) -> Option<String> {
        self.try_get::<Option<String>, _>(col).ok().flatten()
    }
    fn int(&self, col: &str) -> i64 {
        self.try_get::<i64, _>(col).unwrap_or_default()
    }
    fn opt_int(&self, col: &str) -> Option<i64> {
        self.try_get::<Option<i64>, _>(col).ok().flatten()
    }
    fn flag(&self, col: &str) -> bool {
        self.int(col) != 0
    }
    fn float(&self, col: &str) -> f64 {
        self.try_get::<f64, _>(col).unwrap_or_default()
    }
    fn json(&self, col: &str) -> serde_json::Value {
        self.opt_text(col)
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// A timestamp as stored: RFC 3339, UTC, microseconds, so text order is time order.
pub fn ts(t: &oxistack_model::time::Timestamp) -> String {
    oxistack_model::time::iso_micros(t)
}

/// Parses a stored timestamp.
pub fn parse_ts(s: &str) -> oxistack_model::time::Timestamp {
    oxistack_model::time::parse(s).unwrap_or_default()
}
