//! The registry's schema, embedded in the binary and brought up to date at
//! start-up. Each migration runs in its own transaction with the version
//! bump, so a failed one leaves the schema as it was; a database written by
//! a newer gateway is refused before anything is changed.

use super::store::Dialect;
use sqlx::{AnyPool, Row};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "registry",
        sqlite: include_str!("migrations/0001_registry.sqlite.sql"),
        postgres: include_str!("migrations/0001_registry.postgres.sql"),
    },
    Migration {
        version: 2,
        name: "virtual_servers",
        sqlite: include_str!("migrations/0002_virtual_servers.sqlite.sql"),
        postgres: include_str!("migrations/0002_virtual_servers.postgres.sql"),
    },
    Migration {
        version: 3,
        name: "refresh_interval",
        sqlite: include_str!("migrations/0003_refresh_interval.sqlite.sql"),
        postgres: include_str!("migrations/0003_refresh_interval.postgres.sql"),
    },
];

/// The newest schema this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

#[derive(Debug)]
pub enum MigrateError {
    /// Written by a newer gateway; nothing was changed.
    TooNew { found: i64, known: i64 },
    /// Migration `version` failed and was rolled back.
    Failed {
        version: i64,
        name: &'static str,
        error: sqlx::Error,
    },
    /// Reading or creating the version table failed.
    Database(sqlx::Error),
}

impl std::fmt::Display for MigrateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrateError::TooNew { found, known } => write!(
                f,
                "the registry database has schema version {found}, newer than the {known} this \
                 gateway knows: it was written by a newer mcp-gateway; upgrade this one \
                 (the database was not modified)"
            ),
            MigrateError::Failed {
                version,
                name,
                error,
            } => write!(
                f,
                "registry migration {version} ({name}) failed and was rolled back, the schema \
                 is as it was: {error}"
            ),
            MigrateError::Database(e) => write!(f, "cannot read the registry schema version: {e}"),
        }
    }
}

/// Splits a migration file into statements: `;` ends one, `--` lines are
/// comments. The files hold no `;` inside a literal, so nothing smarter.
pub fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Brings the schema to [`latest_version`].
pub async fn migrate(pool: &AnyPool, dialect: Dialect) -> Result<(), MigrateError> {
    migrate_with(pool, dialect, MIGRATIONS).await
}

/// [`migrate`] with a given list, so tests can run a failing migration.
pub async fn migrate_with(
    pool: &AnyPool,
    dialect: Dialect,
    migrations: &[Migration],
) -> Result<(), MigrateError> {
    let known = migrations.last().map_or(0, |m| m.version);
    // Read before creating anything, so a newer database stays untouched.
    if let Some(found) = current_version(pool).await? {
        if found > known {
            return Err(MigrateError::TooNew { found, known });
        }
    }
    bootstrap(pool, dialect)
        .await
        .map_err(MigrateError::Database)?;
    for m in migrations {
        let failed = |error| MigrateError::Failed {
            version: m.version,
            name: m.name,
            error,
        };
        let mut tx = pool.begin().await.map_err(MigrateError::Database)?;
        // A write first: it takes the lock that serialises two processes
        // migrating at once (PostgreSQL row lock, SQLite write lock), so the
        // version read next is the committed one.
        sqlx::query("UPDATE gw_schema SET version = version WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(MigrateError::Database)?;
        let version: i64 = sqlx::query("SELECT version FROM gw_schema WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(MigrateError::Database)?;
        if version > known {
            return Err(MigrateError::TooNew {
                found: version,
                known,
            });
        }
        if version >= m.version {
            continue;
        }
        let sql = match dialect {
            Dialect::Sqlite => m.sqlite,
            Dialect::Postgres => m.postgres,
        };
        for statement in statements(sql) {
            sqlx::query(&statement)
                .execute(&mut *tx)
                .await
                .map_err(failed)?;
        }
        sqlx::query("UPDATE gw_schema SET version = $1 WHERE id = 1")
            .bind(m.version)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        log::info!(
            "registry: schema migrated to version {} ({})",
            m.version,
            m.name
        );
    }
    Ok(())
}

/// The version table, created once even when processes start together.
/// PostgreSQL's `CREATE TABLE IF NOT EXISTS` is not safe against a
/// concurrent twin, so a transaction-scoped advisory lock serialises them.
/// SQLite runs each statement on its own: its write lock serialises them,
/// and a transaction that read first could not wait for it.
async fn bootstrap(pool: &AnyPool, dialect: Dialect) -> Result<(), sqlx::Error> {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS gw_schema \
         (id BIGINT PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)";
    const INSERT: &str =
        "INSERT INTO gw_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING";
    if dialect == Dialect::Sqlite {
        sqlx::query(CREATE).execute(pool).await?;
        sqlx::query(INSERT).execute(pool).await?;
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    // Wrapped so the row has a type the `Any` driver knows (not void).
    sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(7245735013)) AS locked")
        .execute(&mut *tx)
        .await?;
    sqlx::query(CREATE).execute(&mut *tx).await?;
    sqlx::query(INSERT).execute(&mut *tx).await?;
    tx.commit().await
}

/// `None` for a database the gateway never used.
async fn current_version(pool: &AnyPool) -> Result<Option<i64>, MigrateError> {
    match sqlx::query("SELECT version FROM gw_schema WHERE id = 1")
        .fetch_optional(pool)
        .await
    {
        Ok(row) => row
            .map(|r| r.try_get::<i64, _>(0))
            .transpose()
            .map_err(MigrateError::Database),
        // No table yet: every dialect reports it as a database error.
        Err(sqlx::Error::Database(_)) => Ok(None),
        Err(e) => Err(MigrateError::Database(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_semicolons_without_comments() {
        let s = statements("-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\nINSERT INTO a VALUES (1);\n");
        assert_eq!(s, ["CREATE TABLE a (x INT)", "INSERT INTO a VALUES (1)"]);
    }

    #[test]
    fn migrations_are_numbered_in_order_and_both_dialects_match() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert_eq!(statements(m.sqlite).len(), statements(m.postgres).len());
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i64);
    }
}
