//! [`SqlRegistry`]: the [`Registry`] over SQLite or PostgreSQL through
//! sqlx's `Any` driver, so every query is written once; the two dialects
//! differ only in their migration files and a function name or two.

use super::crypto::CredentialCipher;
use super::database_url::DatabaseUrl;
use super::kind::{columns, read_record, Kind};
use super::migrate::{self, MigrateError};
use super::model::{
    Actor, AuditEntry, AuditQuery, ListQuery, Page, RegistryError, ServerDraft, ServerPatch,
    ServerRecord, VirtualServerDraft,
};
use super::rows::db_error;
use super::validate::apply_patch;
use super::virtual_servers::validate_virtual_draft;
use super::Registry;
use crate::config::{Secret, ServerSpec, VirtualServerSpec};
use async_trait::async_trait;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyPool, ConnectOptions, Executor, Row};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The PostgreSQL channel every write notifies in its transaction.
pub const NOTIFY_CHANNEL: &str = "mcp_gateway_registry";

/// How long a query waits for a pooled connection before the registry
/// answers `Unavailable`: an admin write during an outage fails fast.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the registry could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The database did not answer: worth retrying.
    Unreachable(String),
    /// Retrying cannot help (schema too new, a failed migration, another
    /// `AUTH_ENCRYPTION_SECRET`, a file that cannot be created).
    Fatal(String),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Unreachable(why) | OpenError::Fatal(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for OpenError {}

pub struct SqlRegistry {
    pub(super) pool: AnyPool,
    pub(super) dialect: Dialect,
    pub(super) cipher: CredentialCipher,
    url: DatabaseUrl,
}

impl std::fmt::Debug for SqlRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SqlRegistry({})", self.url.redacted())
    }
}

/// A connection error worth a retry: the server is down, restarting or not
/// yet accepting connections.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 57P0x: shutdown, cannot connect now.
            code.starts_with("08") || code.starts_with("57P")
        }),
        _ => false,
    }
}

impl SqlRegistry {
    /// Connects, migrates the schema and checks that `secret` is the one
    /// the stored credentials were sealed with.
    pub async fn connect(url: &DatabaseUrl, secret: &Secret) -> Result<Self, OpenError> {
        sqlx::any::install_default_drivers();
        let (options, dialect, pool_options) = match url {
            DatabaseUrl::SqliteFile(path) => {
                let sqlite = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true);
                (
                    AnyConnectOptions::from_url(&sqlite.to_url_lossy()),
                    Dialect::Sqlite,
                    AnyPoolOptions::new().max_connections(4),
                )
            }
            // One connection that never closes: each new one would be
            // another, empty, database.
            DatabaseUrl::SqliteMemory => (
                "sqlite::memory:".parse::<AnyConnectOptions>(),
                Dialect::Sqlite,
                AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None),
            ),
            DatabaseUrl::Postgres(raw) => (
                raw.expose().parse::<AnyConnectOptions>(),
                Dialect::Postgres,
                AnyPoolOptions::new().max_connections(5),
            ),
        };
        let options = options
            .map_err(|e| OpenError::Fatal(format!("DATABASE_URL ({}): {e}", url.redacted())))?
            .disable_statement_logging();
        let pool = pool_options
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        // WAL lets readers (the sync's polls) run beside a
                        // writer; the busy timeout makes a second writer, in
                        // this process or another, wait instead of failing.
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| {
                let why = format!(
                    "cannot connect to the registry database {}: {e}",
                    url.redacted()
                );
                if dialect == Dialect::Postgres && is_transient(&e) {
                    OpenError::Unreachable(why)
                } else {
                    OpenError::Fatal(why)
                }
            })?;
        migrate::migrate(&pool, dialect)
            .await
            .map_err(|e| match e {
                MigrateError::Database(ref db) if is_transient(db) => {
                    OpenError::Unreachable(e.to_string())
                }
                MigrateError::Failed { ref error, .. } if is_transient(error) => {
                    OpenError::Unreachable(e.to_string())
                }
                e => OpenError::Fatal(e.to_string()),
            })?;
        let registry = SqlRegistry {
            pool,
            dialect,
            cipher: CredentialCipher::new(secret),
            url: url.clone(),
        };
        registry.check_key().await?;
        Ok(registry)
    }

    /// The first process seals a known value; every later one must open it.
    async fn check_key(&self) -> Result<(), OpenError> {
        let classify = |e: sqlx::Error| {
            if is_transient(&e) {
                OpenError::Unreachable(e.to_string())
            } else {
                OpenError::Fatal(e.to_string())
            }
        };
        sqlx::query("UPDATE gw_meta SET key_check = $1 WHERE id = 1 AND key_check IS NULL")
            .bind(self.cipher.key_check())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        let sealed: Vec<u8> = sqlx::query("SELECT key_check FROM gw_meta WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(classify)?;
        if !self.cipher.verify_key_check(&sealed) {
            return Err(OpenError::Fatal(
                "AUTH_ENCRYPTION_SECRET is not the one the registry database's credentials \
                 were encrypted with: set the original value (nothing was changed)"
                    .into(),
            ));
        }
        Ok(())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn database_url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Closes the pool's connections (tests that reopen a file).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The generation and the enabled servers and virtual servers as the
    /// data plane runs them. A stored record that no longer passes
    /// validation is skipped with a warning rather than taking every other
    /// one down with it.
    pub async fn load_enabled(&self) -> Result<Enabled, RegistryError> {
        let generation = self.generation().await?;
        let rows = sqlx::query(&format!(
            "SELECT {} FROM gw_servers WHERE enabled = 1 ORDER BY name",
            columns::<ServerDraft>()
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut servers = Vec::with_capacity(rows.len());
        for row in &rows {
            let record: ServerRecord = read_record(row, &self.cipher)?;
            match super::validate::spec_from_record(&record) {
                Ok(spec) => servers.push(spec),
                Err(e) => log::warn!("registry: server {:?} skipped: {e}", record.draft.name),
            }
        }
        let rows = sqlx::query(&format!(
            "SELECT {} FROM gw_virtual_servers WHERE enabled = 1 ORDER BY name",
            columns::<VirtualServerDraft>()
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut virtual_servers = Vec::with_capacity(rows.len());
        for row in &rows {
            let record: super::Record<VirtualServerDraft> = read_record(row, &self.cipher)?;
            match validate_virtual_draft(&record.draft) {
                Ok(spec) => virtual_servers.push(spec),
                Err(e) => log::warn!(
                    "registry: virtual server {:?} skipped: {e}",
                    record.draft.name
                ),
            }
        }
        Ok(Enabled {
            generation,
            servers,
            virtual_servers,
        })
    }

    /// `instr` in SQLite, `strpos` in PostgreSQL: a substring test with no
    /// wildcard characters to escape.
    pub(super) fn contains_fn(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "instr",
            Dialect::Postgres => "strpos",
        }
    }
}

/// What the data plane runs, as read at one registry generation.
#[derive(Debug, Clone, Default)]
pub struct Enabled {
    pub generation: i64,
    pub servers: Vec<ServerSpec>,
    pub virtual_servers: Vec<VirtualServerSpec>,
}

/// `limit` 0 means 100, and no page is longer than 500.
pub(super) fn page_limit(limit: u32) -> u32 {
    match limit {
        0 => 100,
        n => n.min(500),
    }
}

impl SqlRegistry {
    /// `query`'s search (in the name or the description, any case), as a
    /// condition whose two binds are `$first` and the next.
    pub(super) fn search_condition(
        &self,
        query: &ListQuery,
        first: usize,
        conditions: &mut Vec<String>,
        binds: &mut Vec<String>,
    ) {
        if let Some(search) = query.search.as_deref().filter(|s| !s.is_empty()) {
            let f = self.contains_fn();
            let second = first + 1;
            conditions.push(format!(
                "({f}(lower(name), ${first}) > 0 OR {f}(lower(description), ${second}) > 0)"
            ));
            binds.push(search.to_lowercase());
            binds.push(search.to_lowercase());
        }
    }

    /// One page of `K`'s records, by name, among those `conditions` (over
    /// `binds`, numbered from `$1`) let through, with their total.
    pub(super) async fn page_of<K: Kind>(
        &self,
        conditions: &[String],
        binds: &[String],
        query: &ListQuery,
    ) -> Result<Page<super::Record<K>>, RegistryError> {
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let limit = page_limit(query.limit);
        let count_sql = format!("SELECT COUNT(*) FROM {}{filter}", K::TABLE);
        let mut count = sqlx::query(&count_sql);
        for b in binds {
            count = count.bind(b.as_str());
        }
        let total: i64 = count
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db_error)?;
        let page_sql = format!(
            "SELECT {} FROM {}{filter} ORDER BY name LIMIT {limit} OFFSET {}",
            columns::<K>(),
            K::TABLE,
            query.offset
        );
        let mut page = sqlx::query(&page_sql);
        for b in binds {
            page = page.bind(b.as_str());
        }
        let rows = page.fetch_all(&self.pool).await.map_err(db_error)?;
        let items = rows
            .iter()
            .map(|r| read_record(r, &self.cipher))
            .collect::<Result<_, _>>()?;
        Ok(Page {
            items,
            total: total.max(0) as u64,
            offset: query.offset,
            limit,
        })
    }

    /// `K`'s record named `name`.
    pub(super) async fn one_of<K: Kind>(
        &self,
        name: &str,
    ) -> Result<super::Record<K>, RegistryError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM {} WHERE name = $1",
            columns::<K>(),
            K::TABLE
        ))
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?
        .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        read_record(&row, &self.cipher)
    }
}

#[async_trait]
impl Registry for SqlRegistry {
    async fn list(&self, query: &ListQuery) -> Result<Page<ServerRecord>, RegistryError> {
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        if let Some(enabled) = query.enabled {
            conditions.push(format!("enabled = {}", i64::from(enabled)));
        }
        if let Some(tag) = &query.tag {
            // Tags are stored as a JSON array: the JSON form of the tag,
            // quotes included, matches one whole element.
            let f = self.contains_fn();
            conditions.push(format!("{f}(tags, ${}) > 0", next()));
            binds.push(serde_json::to_string(tag).expect("a string serialises"));
        }
        let first = n + 1;
        self.search_condition(query, first, &mut conditions, &mut binds);
        self.page_of::<ServerDraft>(&conditions, &binds, query)
            .await
    }

    async fn get(&self, name: &str) -> Result<ServerRecord, RegistryError> {
        self.one_of::<ServerDraft>(name).await
    }

    async fn create(
        &self,
        draft: ServerDraft,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        self.write_create(draft, actor).await
    }

    async fn update(
        &self,
        name: &str,
        draft: ServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        let mut draft = draft;
        if draft.name.is_empty() {
            draft.name = name.to_string();
        }
        self.write_update(name, draft, expected_version, actor)
            .await
    }

    async fn patch(
        &self,
        name: &str,
        patch: ServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        self.write_patch(
            name,
            |draft: ServerDraft| apply_patch(draft, patch),
            expected_version,
            actor,
        )
        .await
    }

    async fn delete(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        self.write_delete::<ServerDraft>(name, expected_version, actor)
            .await
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, RegistryError> {
        let limit = page_limit(query.limit);
        let filter = if query.server.is_some() {
            " WHERE server = $1"
        } else {
            ""
        };
        let count_sql = format!("SELECT COUNT(*) FROM gw_audit{filter}");
        let page_sql = format!(
            "SELECT id, at, actor, action, kind, server, before_json, after_json FROM gw_audit{filter} \
             ORDER BY id DESC LIMIT {limit} OFFSET {}",
            query.offset
        );
        let mut count = sqlx::query(&count_sql);
        let mut page = sqlx::query(&page_sql);
        if let Some(server) = &query.server {
            count = count.bind(server.as_str());
            page = page.bind(server.as_str());
        }
        let total: i64 = count
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db_error)?;
        let rows = page.fetch_all(&self.pool).await.map_err(db_error)?;
        let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        let items = rows
            .iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    action: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    server: r.try_get(5)?,
                    before: json(r.try_get(6)?),
                    after: json(r.try_get(7)?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db_error)?;
        Ok(Page {
            items,
            total: total.max(0) as u64,
            offset: query.offset,
            limit,
        })
    }

    async fn generation(&self) -> Result<i64, RegistryError> {
        sqlx::query("SELECT generation FROM gw_meta WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db_error)
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        self.pool
            .execute("SELECT 1")
            .await
            .map(drop)
            .map_err(db_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limits() {
        assert_eq!(page_limit(0), 100);
        assert_eq!(page_limit(7), 7);
        assert_eq!(page_limit(10_000), 500);
    }

    #[test]
    fn connection_failures_are_retried_and_the_rest_is_not() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(is_transient(&io));
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
    }
}
