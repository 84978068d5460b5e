//! Linear, named migrations, applied in order and recorded in
//! `schema_migrations`. A migration is never edited once released: a change
//! is a new migration. The same SQL runs on SQLite and PostgreSQL.

use oxistack_model::AppError;
use sqlx::Executor;

use crate::{db_err, Store};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($v:expr, $name:literal) => {
        Migration {
            version: $v,
            name: $name,
            sql: include_str!(concat!("../migrations/", $name, ".sql")),
        }
    };
}

pub static MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_core"),
    migration!(2, "0002_identity"),
    migration!(3, "0003_images"),
    migration!(4, "0004_compute"),
    migration!(5, "0005_placement"),
    migration!(6, "0006_network"),
];

/// Splits a migration into statements: they are separated by a line that
/// ends in `;`. Comments (`--`) are dropped.
pub fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in sql.lines() {
        let l = line.trim();
        if l.is_empty() || l.starts_with("--") {
            continue;
        }
        cur.push_str(line);
        cur.push('\n');
        if l.ends_with(';') {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

pub async fn apply(store: &Store) -> Result<(), AppError> {
    store
        .pool()
        .execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at TEXT NOT NULL)",
        )
        .await
        .map_err(db_err)?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
        .fetch_all(store.pool())
        .await
        .map_err(db_err)?;
    for m in MIGRATIONS {
        if applied.contains(&m.version) {
            continue;
        }
        let mut tx = store.begin().await?;
        for stmt in statements(m.sql) {
            tx.execute(stmt.as_str())
                .await
                .map_err(|e| AppError::internal(format!("migration {} failed: {e}", m.name)))?;
        }
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(crate::ts(&oxistack_model::time::now()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_linear_and_named_after_their_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
            assert!(!statements(m.sql).is_empty(), "{} is empty", m.name);
        }
    }

    #[test]
    fn statements_split_on_semicolon_lines() {
        let s = statements("-- c\nCREATE TABLE a (x TEXT);\n\nCREATE INDEX i\n ON a (x);\n");
        assert_eq!(s.len(), 2);
        assert!(s[1].contains("ON a (x);"));
    }
}
