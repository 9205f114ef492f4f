//! One fresh database per test and store; helpers to build drafts.

use mcp_gateway::config::{Secret, UpstreamCredential};
use mcp_gateway::registry::{Actor, DatabaseUrl, ServerDraft, SqlRegistry};
use sqlx::Connection;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

pub const SECRET: &str = "registry-test-encryption-secret-0123";

pub fn secret() -> Secret {
    Secret::new(SECRET)
}

pub fn admin() -> Actor {
    Actor("admin@example.com".into())
}

pub fn draft(name: &str) -> ServerDraft {
    ServerDraft {
        name: name.into(),
        urls: vec![format!("http://127.0.0.1:9/{name}/mcp")],
        enabled: true,
        ..ServerDraft::default()
    }
}

pub fn bearer(token: &str) -> UpstreamCredential {
    UpstreamCredential::Bearer(Secret::new(token))
}

/// A database that exists for one test.
pub struct TestDb {
    pub url: DatabaseUrl,
    pub label: &'static str,
    /// SQLite: the directory holding the file.
    _dir: Option<tempfile::TempDir>,
    /// PostgreSQL: (server URL, database name), dropped by [`TestDb::drop_db`].
    pg: Option<(String, String)>,
}

impl TestDb {
    pub async fn open(&self) -> SqlRegistry {
        SqlRegistry::connect(&self.url, &secret())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.label))
    }

    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        match &self.url {
            DatabaseUrl::SqliteFile(p) => Some(p.clone()),
            _ => None,
        }
    }

    /// A raw connection, for what the registry API cannot do (corrupt a
    /// schema version).
    pub async fn raw(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        let url = match &self.url {
            DatabaseUrl::SqliteFile(p) => format!("sqlite://{}", p.display()),
            DatabaseUrl::Postgres(u) => u.expose().to_string(),
            DatabaseUrl::SqliteMemory => unreachable!("tests use files"),
        };
        sqlx::AnyConnection::connect(&url)
            .await
            .expect("raw connection")
    }

    pub async fn drop_db(self) {
        if let Some((server, name)) = &self.pg {
            let mut conn = sqlx::PgConnection::connect(server).await.expect("pg");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await
                .expect("drop test database");
        }
    }
}

static N: AtomicUsize = AtomicUsize::new(0);
static LOUD: Once = Once::new();

/// A SQLite file in a directory of its own, for what only SQLite has.
pub fn sqlite_database() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    TestDb {
        url: DatabaseUrl::SqliteFile(dir.path().join("mcp.db")),
        label: "sqlite",
        _dir: Some(dir),
        pg: None,
    }
}

/// SQLite, and PostgreSQL when `TEST_DATABASE_URL` is set.
pub async fn test_databases() -> Vec<TestDb> {
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut out = vec![sqlite_database()];
    match std::env::var("TEST_DATABASE_URL") {
        Ok(server) if !server.is_empty() => {
            let name = format!("gw_regtest_{}_{n}", std::process::id());
            let mut conn = sqlx::PgConnection::connect(&server)
                .await
                .expect("TEST_DATABASE_URL reachable");
            drop_leftovers_of_dead_runs(&mut conn).await;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
            let url = DatabaseUrl::parse(&format!("{base}/{name}")).expect("a postgres URL");
            out.push(TestDb {
                url,
                label: "postgres",
                _dir: None,
                pg: Some((server.clone(), name)),
            });
        }
        _ => LOUD.call_once(|| {
            // Straight to the stream: the test harness captures `eprintln!`.
            use std::io::Write;
            let _ = std::io::stderr().write_all(
                b"\n*** TEST_DATABASE_URL is not set: the registry tests run against SQLite ONLY ***\n",
            );
        }),
    }
    out
}

/// A test that panics leaves its database behind; the next run removes the
/// databases of processes that no longer exist.
async fn drop_leftovers_of_dead_runs(conn: &mut sqlx::PgConnection) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT datname FROM pg_database WHERE datname LIKE 'gw\\_regtest\\_%'",
        )
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_default();
        for name in names {
            let pid = name.split('_').nth(2).unwrap_or_default();
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut *conn)
                    .await;
            }
        }
    })
    .await;
}
