//! Isolated databases for tests: a fresh SQLite file, or a fresh PostgreSQL
//! database when `OXISTACK_TEST_DATABASE=postgres` (dropped when the guard goes).
//!
//! The PostgreSQL server is taken from `OXISTACK_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432`).

use oxistack_model::AppError;
use sqlx::Executor;

/// Which engine the test suite runs on, from `OXISTACK_TEST_DATABASE`.
pub fn engine_under_test() -> crate::Engine {
    match std::env::var("OXISTACK_TEST_DATABASE").as_deref() {
        Ok("postgres") | Ok("postgresql") => crate::Engine::Postgres,
        _ => crate::Engine::Sqlite,
    }
}

pub fn postgres_server_url() -> String {
    std::env::var("OXISTACK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Creates a fresh, empty database for the engine under test.
    pub async fn new() -> Result<TestDb, AppError> {
        match engine_under_test() {
            crate::Engine::Sqlite => {
                let dir = tempfile::Builder::new()
                    .prefix("oxistack-test-")
                    .tempdir()?;
                Ok(TestDb {
                    url: format!("sqlite://{}/oxistack.db", dir.path().display()),
                    pg_name: None,
                    _dir: Some(dir),
                })
            }
            crate::Engine::Postgres => {
                let name = format!("oxistack_test_{}", uuid::Uuid::new_v4().simple());
                create_postgres_database(&name).await?;
                Ok(TestDb {
                    url: format!("{}/{name}", postgres_server_url()),
                    pg_name: Some(name),
                    _dir: None,
                })
            }
        }
    }
}

/// Creates a database on the test PostgreSQL server.
pub async fn create_postgres_database(name: &str) -> Result<(), AppError> {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!(
        "{}/postgres",
        postgres_server_url()
    ))
    .await
    .map_err(|e| AppError::unavailable("test postgres unreachable").with_context(e.to_string()))?;
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .map_err(crate::db_err)?;
    Ok(())
}

/// Drops a database on the test PostgreSQL server (best effort).
pub async fn drop_postgres_database(name: &str) {
    sqlx::any::install_default_drivers();
    if let Ok(mut conn) = <sqlx::AnyConnection as sqlx::Connection>::connect(&format!(
        "{}/postgres",
        postgres_server_url()
    ))
    .await
    {
        let _ = conn
            .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
            .await;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            // Drop on a separate thread with its own runtime: Drop may run
            // inside a runtime that is shutting down.
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_postgres_database(&name));
                }
            })
            .join();
        }
    }
}
