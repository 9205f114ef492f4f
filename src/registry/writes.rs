//! Every write: one transaction that first bumps the generation (which also
//! serialises writers, in one process or several), checks the record's
//! version, writes the row and its audit entry, and on PostgreSQL notifies
//! the other replicas. An error anywhere rolls all of it back.

use super::model::{Actor, Origin, RegistryError, ServerDraft, ServerPatch, ServerRecord};
use super::rows::{
    auth_mode_name, db_error, list_json, record_from_row, redacted_json, transport_name,
    SERVER_COLUMNS,
};
use super::store::{Dialect, SqlRegistry, NOTIFY_CHANNEL};
use super::validate::{apply_patch, draft_from_spec, validate_draft};
use crate::config::ServerSpec;
use sqlx::{Any, Row, Transaction};
use std::collections::HashSet;

type Tx<'a> = Transaction<'a, Any>;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What [`SqlRegistry::upsert_config`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigSummary {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
}

impl ConfigSummary {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

impl SqlRegistry {
    async fn begin_write(&self) -> Result<Tx<'_>, RegistryError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("UPDATE gw_meta SET generation = generation + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        Ok(tx)
    }

    async fn commit_write(&self, mut tx: Tx<'_>) -> Result<(), RegistryError> {
        if self.dialect == Dialect::Postgres {
            // Delivered at commit, and only if the transaction commits.
            sqlx::query(&format!("NOTIFY {NOTIFY_CHANNEL}"))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn fetch_for_write(
        &self,
        tx: &mut Tx<'_>,
        name: &str,
    ) -> Result<Option<ServerRecord>, RegistryError> {
        let row = sqlx::query(&format!(
            "SELECT {SERVER_COLUMNS} FROM gw_servers WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        row.map(|r| record_from_row(&r, &self.cipher)).transpose()
    }

    async fn audit_entry(
        tx: &mut Tx<'_>,
        actor: &Actor,
        action: &str,
        server: &str,
        before: Option<&ServerRecord>,
        after: Option<&ServerRecord>,
    ) -> Result<(), RegistryError> {
        let json = |r: Option<&ServerRecord>| r.map(|r| redacted_json(r).to_string());
        sqlx::query(
            "INSERT INTO gw_audit (at, actor, action, server, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(now())
        .bind(actor.0.as_str())
        .bind(action)
        .bind(server)
        .bind(json(before))
        .bind(json(after))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn insert_row(
        &self,
        tx: &mut Tx<'_>,
        record: &ServerRecord,
    ) -> Result<bool, RegistryError> {
        let done = self
            .bind_record(
                sqlx::query(
                    "INSERT INTO gw_servers (name, urls, transport, auth_mode, proxy_header, \
                     jwt_audience, passthrough_headers, enabled, description, tags, credential, \
                     origin_file, version, refresh_interval, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16) \
                     ON CONFLICT (name) DO NOTHING",
                ),
                record,
            )
            .bind(record.created_at)
            .bind(record.updated_at)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// Binds `$1`..`$14`, the columns an insert and an update share, in the
    /// table's order: name, urls, …, origin_file, version, then
    /// refresh_interval (added by migration 2).
    fn bind_record<'q>(
        &self,
        query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
        record: &'q ServerRecord,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        let d = &record.draft;
        let origin_file = match &record.origin {
            Origin::Config { file } => Some(file.as_str()),
            Origin::Api => None,
        };
        query
            .bind(d.name.as_str())
            .bind(list_json(&d.urls))
            .bind(transport_name(d.transport))
            .bind(auth_mode_name(d.auth_mode))
            .bind(d.proxy_header.as_deref())
            .bind(d.jwt_audience.as_deref())
            .bind(d.passthrough_headers.as_deref().map(list_json))
            .bind(i64::from(d.enabled))
            .bind(d.description.as_str())
            .bind(list_json(&d.tags))
            .bind(self.cipher.seal(&d.name, &d.upstream_auth))
            .bind(origin_file)
            .bind(record.version)
            .bind(d.refresh_interval)
    }

    /// Rewrites the row if its version is still `expected`; false if not.
    async fn update_row(
        &self,
        tx: &mut Tx<'_>,
        record: &ServerRecord,
        expected: i64,
    ) -> Result<bool, RegistryError> {
        let done = self
            .bind_record(
                sqlx::query(
                    "UPDATE gw_servers SET urls = $2, transport = $3, auth_mode = $4, \
                     proxy_header = $5, jwt_audience = $6, passthrough_headers = $7, \
                     enabled = $8, description = $9, tags = $10, credential = $11, \
                     origin_file = $12, version = $13, refresh_interval = $14, \
                     updated_at = $15 WHERE name = $1 AND version = $16",
                ),
                record,
            )
            .bind(record.updated_at)
            .bind(expected)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// The current record, if the API may change it at `expected` version.
    async fn writable(
        &self,
        tx: &mut Tx<'_>,
        name: &str,
        expected: Option<i64>,
    ) -> Result<ServerRecord, RegistryError> {
        let current = self
            .fetch_for_write(tx, name)
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        if let Origin::Config { file } = &current.origin {
            return Err(RegistryError::ConfigOwned {
                name: name.to_string(),
                file: file.clone(),
            });
        }
        if let Some(expected) = expected.filter(|v| *v != current.version) {
            log::debug!(
                "registry: {name} at version {} not {expected}",
                current.version
            );
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                current_version: current.version,
            });
        }
        Ok(current)
    }

    pub(super) async fn write_create(
        &self,
        draft: ServerDraft,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        validate_draft(&draft)?;
        let at = now();
        let record = ServerRecord {
            draft,
            origin: Origin::Api,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        let mut tx = self.begin_write().await?;
        if !self.insert_row(&mut tx, &record).await? {
            return Err(RegistryError::Exists(record.draft.name));
        }
        Self::audit_entry(
            &mut tx,
            actor,
            "create",
            &record.draft.name,
            None,
            Some(&record),
        )
        .await?;
        self.commit_write(tx).await?;
        Ok(record)
    }

    /// Replaces `current` by `draft` (already validated) at the next version.
    async fn replace(
        &self,
        mut tx: Tx<'_>,
        current: ServerRecord,
        draft: ServerDraft,
        action: &str,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        let record = ServerRecord {
            draft,
            origin: current.origin.clone(),
            version: current.version + 1,
            created_at: current.created_at,
            updated_at: now(),
        };
        if !self.update_row(&mut tx, &record, current.version).await? {
            return Err(RegistryError::Conflict {
                name: record.draft.name,
                current_version: current.version,
            });
        }
        Self::audit_entry(
            &mut tx,
            actor,
            action,
            &record.draft.name,
            Some(&current),
            Some(&record),
        )
        .await?;
        self.commit_write(tx).await?;
        Ok(record)
    }

    pub(super) async fn write_update(
        &self,
        name: &str,
        mut draft: ServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        if draft.name.is_empty() {
            draft.name = name.to_string();
        }
        if draft.name != name {
            return Err(RegistryError::Invalid {
                field: "name".into(),
                problem: format!("a server cannot be renamed ({name:?} to {:?})", draft.name),
            });
        }
        validate_draft(&draft)?;
        let mut tx = self.begin_write().await?;
        let current = self.writable(&mut tx, name, Some(expected_version)).await?;
        self.replace(tx, current, draft, "update", actor).await
    }

    pub(super) async fn write_patch(
        &self,
        name: &str,
        patch: ServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        let mut tx = self.begin_write().await?;
        let current = self.writable(&mut tx, name, expected_version).await?;
        let draft = apply_patch(current.draft.clone(), patch);
        validate_draft(&draft)?;
        self.replace(tx, current, draft, "patch", actor).await
    }

    pub(super) async fn write_delete(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        let mut tx = self.begin_write().await?;
        let current = self.writable(&mut tx, name, expected_version).await?;
        let done = sqlx::query("DELETE FROM gw_servers WHERE name = $1 AND version = $2")
            .bind(name)
            .bind(current.version)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        if done.rows_affected() != 1 {
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                current_version: current.version,
            });
        }
        Self::audit_entry(&mut tx, actor, "delete", name, Some(&current), None).await?;
        self.commit_write(tx).await
    }

    /// Start-up: makes the registry hold exactly the YAML file's servers as
    /// configuration-owned records (enabled, read-only through the API).
    /// A YAML server takes over an API record of the same name; a record
    /// that came from configuration and is no longer in the file is removed.
    /// One transaction, audited as `config` by `config:<file>`; nothing is
    /// written (and no generation bumped) when nothing changed.
    pub async fn upsert_config(
        &self,
        specs: &[ServerSpec],
        file: &str,
    ) -> Result<ConfigSummary, RegistryError> {
        let actor = Actor(format!("config:{file}"));
        let origin = Origin::Config {
            file: file.to_string(),
        };
        let mut summary = ConfigSummary::default();
        let mut tx = self.begin_write().await?;
        let at = now();
        for spec in specs {
            let mut draft = draft_from_spec(spec);
            validate_draft(&draft)?;
            match self.fetch_for_write(&mut tx, &spec.name).await? {
                None => {
                    let record = ServerRecord {
                        draft,
                        origin: origin.clone(),
                        version: 1,
                        created_at: at,
                        updated_at: at,
                    };
                    self.insert_row(&mut tx, &record).await?;
                    Self::audit_entry(&mut tx, &actor, "config", &spec.name, None, Some(&record))
                        .await?;
                    summary.created.push(spec.name.clone());
                }
                Some(current) => {
                    // What the file cannot say is kept from the record.
                    draft.description = current.draft.description.clone();
                    draft.tags = current.draft.tags.clone();
                    draft.transport = current.draft.transport;
                    if current.origin == origin && same_draft(&current.draft, &draft) {
                        continue;
                    }
                    if current.origin == Origin::Api {
                        log::warn!(
                            "registry: server {:?} was created through the API; {file} declares it, \
                             so it now comes from the file",
                            spec.name
                        );
                    }
                    let record = ServerRecord {
                        draft,
                        origin: origin.clone(),
                        version: current.version + 1,
                        created_at: current.created_at,
                        updated_at: at,
                    };
                    self.update_row(&mut tx, &record, current.version).await?;
                    Self::audit_entry(
                        &mut tx,
                        &actor,
                        "config",
                        &spec.name,
                        Some(&current),
                        Some(&record),
                    )
                    .await?;
                    summary.updated.push(spec.name.clone());
                }
            }
        }
        let declared: HashSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let owned =
            sqlx::query("SELECT name FROM gw_servers WHERE origin_file IS NOT NULL ORDER BY name")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
        for row in owned {
            let name: String = row.try_get(0).map_err(db_error)?;
            if declared.contains(name.as_str()) {
                continue;
            }
            let current = self.fetch_for_write(&mut tx, &name).await?;
            sqlx::query("DELETE FROM gw_servers WHERE name = $1")
                .bind(name.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            Self::audit_entry(&mut tx, &actor, "config", &name, current.as_ref(), None).await?;
            summary.removed.push(name);
        }
        if summary.is_empty() {
            tx.rollback().await.map_err(db_error)?;
        } else {
            self.commit_write(tx).await?;
        }
        Ok(summary)
    }
}

/// Field by field, credentials included (their secrets compared as values).
fn same_draft(a: &ServerDraft, b: &ServerDraft) -> bool {
    a.name == b.name
        && a.urls == b.urls
        && a.transport == b.transport
        && a.auth_mode == b.auth_mode
        && a.proxy_header == b.proxy_header
        && a.jwt_audience == b.jwt_audience
        && a.passthrough_headers == b.passthrough_headers
        && a.enabled == b.enabled
        && a.description == b.description
        && a.tags == b.tags
        && a.upstream_auth == b.upstream_auth
        && a.refresh_interval == b.refresh_interval
}
