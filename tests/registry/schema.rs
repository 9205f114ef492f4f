//! Migrations, the schema version guard and credentials at rest.

use crate::databases::*;
use mcp_gateway::config::Secret;
use mcp_gateway::registry::migrate::{self, Migration};
use mcp_gateway::registry::{Dialect, OpenError, Registry, SqlRegistry};
use sqlx::{Connection, Executor, Row};

async fn schema_version(db: &TestDb) -> i64 {
    let mut conn = db.raw().await;
    let v = sqlx::query("SELECT version FROM gw_schema WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .and_then(|r| r.try_get(0))
        .expect("schema version");
    conn.close().await.ok();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_and_a_restart_keeps_everything() {
    for db in test_databases().await {
        let first = db.open().await;
        first.create(draft("alpha"), &admin()).await.unwrap();
        first.close().await;
        let second = db.open().await;
        assert_eq!(
            second.get("alpha").await.unwrap().version,
            1,
            "{}",
            db.label
        );
        assert_eq!(schema_version(&db).await, migrate::latest_version());
        second.close().await;
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_starting_together_on_a_new_database_migrate_it_once() {
    for db in test_databases().await {
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { SqlRegistry::connect(&url, &secret()).await })
            })
            .collect();
        for start in starts {
            let reg = start
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e}", db.label));
            reg.close().await;
        }
        assert_eq!(schema_version(&db).await, migrate::latest_version());
        let reg = db.open().await;
        assert_eq!(
            reg.generation().await.unwrap(),
            0,
            "{}: one meta row, untouched",
            db.label
        );
        reg.close().await;
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_gateway_is_refused_unmodified() {
    for db in test_databases().await {
        let reg = db.open().await;
        reg.create(draft("alpha"), &admin()).await.unwrap();
        let generation = reg.generation().await.unwrap();
        reg.close().await;
        let mut conn = db.raw().await;
        conn.execute("UPDATE gw_schema SET version = 99 WHERE id = 1")
            .await
            .unwrap();
        conn.close().await.ok();
        let e = SqlRegistry::connect(&db.url, &secret()).await.unwrap_err();
        let OpenError::Fatal(why) = &e else {
            panic!("{}: expected Fatal, got {e:?}", db.label)
        };
        assert!(
            why.contains("99") && why.contains(&format!(" {} ", migrate::latest_version())),
            "{why}"
        );
        assert!(why.contains("newer"), "{why}");
        assert_eq!(schema_version(&db).await, 99);
        let mut conn = db.raw().await;
        let g: i64 = sqlx::query("SELECT generation FROM gw_meta")
            .fetch_one(&mut conn)
            .await
            .and_then(|r| r.try_get(0))
            .unwrap();
        assert_eq!(g, generation);
        conn.close().await.ok();
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_migration_leaves_the_schema_as_it_was() {
    for db in test_databases().await {
        db.open().await.close().await;
        sqlx::any::install_default_drivers();
        let url = match &db.url {
            mcp_gateway::registry::DatabaseUrl::SqliteFile(p) => {
                format!("sqlite://{}", p.display())
            }
            mcp_gateway::registry::DatabaseUrl::Postgres(u) => u.expose().to_string(),
            _ => unreachable!(),
        };
        let pool = sqlx::AnyPool::connect(&url).await.unwrap();
        let dialect = if db.label == "postgres" {
            Dialect::Postgres
        } else {
            Dialect::Sqlite
        };
        let broken = "CREATE TABLE gw_half_done (x BIGINT); INSERT INTO no_such_table VALUES (1);";
        // The real migrations (already applied), then a broken next one.
        let latest = migrate::latest_version();
        let mut migrations: Vec<Migration> = migrate::MIGRATIONS
            .iter()
            .map(|m| Migration {
                version: m.version,
                name: m.name,
                sqlite: "",
                postgres: "",
            })
            .collect();
        migrations.push(Migration {
            version: latest + 1,
            name: "broken",
            sqlite: broken,
            postgres: broken,
        });
        let e = migrate::migrate_with(&pool, dialect, &migrations)
            .await
            .unwrap_err();
        let text = e.to_string();
        let expected = format!(
            "migration {} (broken) failed and was rolled back",
            latest + 1
        );
        assert!(text.contains(&expected), "{text}");
        assert_eq!(schema_version(&db).await, latest, "{}", db.label);
        let half = sqlx::query("SELECT x FROM gw_half_done")
            .fetch_optional(&pool)
            .await;
        assert!(half.is_err(), "{}: the first statement was kept", db.label);
        pool.close().await;
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_encryption_secret_is_refused_clearly() {
    for db in test_databases().await {
        let reg = db.open().await;
        let mut d = draft("alpha");
        d.upstream_auth = bearer("tok");
        reg.create(d, &admin()).await.unwrap();
        reg.close().await;
        let e = SqlRegistry::connect(&db.url, &Secret::new("another-secret-entirely"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, OpenError::Fatal(why) if why.contains("AUTH_ENCRYPTION_SECRET")),
            "{}: {e:?}",
            db.label
        );
        db.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_encrypted_in_the_sqlite_file() {
    let db = sqlite_database();
    let path = db.sqlite_path().expect("sqlite first");
    let reg = db.open().await;
    let mut d = draft("needle-server");
    d.upstream_auth = bearer("tok-PLAINTEXT-canary-42");
    reg.create(d, &admin()).await.unwrap();
    reg.close().await;
    // The write-ahead log too: a fresh write may still be only there.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend(std::fs::read(path.with_extension("db-wal")).unwrap_or_default());
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"needle-server"), "reading the right file");
    assert!(!has(b"PLAINTEXT-canary"), "the token is stored in clear");
    let reopened = db.open().await;
    assert_eq!(
        reopened
            .get("needle-server")
            .await
            .unwrap()
            .draft
            .upstream_auth,
        bearer("tok-PLAINTEXT-canary-42")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_url_creates_the_file_where_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let url = mcp_gateway::registry::DatabaseUrl::parse(&format!(
        "sqlite:///{}/sub.db",
        dir.path().display()
    ))
    .unwrap();
    let reg = SqlRegistry::connect(&url, &secret()).await.unwrap();
    reg.close().await;
    assert!(dir.path().join("sub.db").exists());
    let memory = SqlRegistry::connect(&mcp_gateway::registry::DatabaseUrl::SqliteMemory, &secret())
        .await
        .unwrap();
    memory.create(draft("a"), &admin()).await.unwrap();
    assert_eq!(memory.get("a").await.unwrap().version, 1);
}
