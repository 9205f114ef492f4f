//! Every write: one transaction that first bumps the generation (which also
//! serialises writers, in one process or several), checks the record's
//! version, writes the row and its audit entry, and on PostgreSQL notifies
//! the other replicas. An error anywhere rolls all of it back. One path for
//! every [`Kind`] of record: servers and virtual servers.

use super::kind::{bind_record, columns, insert_sql, read_record, update_sql, Kind};
use super::model::{Actor, Origin, Record, RegistryError, ServerDraft, VirtualServerDraft};
use super::rows::db_error;
use super::store::{Dialect, SqlRegistry, NOTIFY_CHANNEL};
use super::validate::draft_from_spec;
use super::virtual_servers::virtual_draft_from_spec;
use crate::config::{ServerSpec, VirtualServerSpec};
use sqlx::{Any, Row, Transaction};
use std::collections::HashSet;

pub(super) type Tx<'a> = Transaction<'a, Any>;

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What [`SqlRegistry::upsert_config`] changed, servers and virtual
/// servers alike (their names are one name space).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConfigSummary {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Whether any of those names is a virtual server's.
    pub virtual_servers_changed: bool,
}

impl ConfigSummary {
    pub fn is_empty(&self) -> bool {
        self.created.is_empty() && self.updated.is_empty() && self.removed.is_empty()
    }
}

/// The YAML file's records as one [`SqlRegistry::upsert_config`] writes them.
struct ConfigWrite<'a> {
    file: &'a str,
    actor: Actor,
    origin: Origin,
    at: i64,
    summary: ConfigSummary,
}

impl ConfigWrite<'_> {
    fn touched<K: Kind>(&mut self) {
        if K::TABLE == <VirtualServerDraft as Kind>::TABLE {
            self.summary.virtual_servers_changed = true;
        }
    }
}

impl SqlRegistry {
    pub(super) async fn begin_write(&self) -> Result<Tx<'_>, RegistryError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("UPDATE gw_meta SET generation = generation + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        Ok(tx)
    }

    pub(super) async fn commit_write(&self, mut tx: Tx<'_>) -> Result<(), RegistryError> {
        if self.dialect == Dialect::Postgres {
            // Delivered at commit, and only if the transaction commits.
            sqlx::query(&format!("NOTIFY {NOTIFY_CHANNEL}"))
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    async fn fetch_for_write<K: Kind>(
        &self,
        tx: &mut Tx<'_>,
        name: &str,
    ) -> Result<Option<Record<K>>, RegistryError> {
        let row = sqlx::query(&format!(
            "SELECT {} FROM {} WHERE name = $1",
            columns::<K>(),
            K::TABLE
        ))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        row.map(|r| read_record(&r, &self.cipher)).transpose()
    }

    /// `NameTaken` if a record of the other kind has `name`. Run after
    /// [`begin_write`](Self::begin_write), whose generation bump makes every
    /// other writer wait, so no twin can appear between this and the insert.
    async fn refuse_rival<K: Kind>(
        &self,
        tx: &mut Tx<'_>,
        name: &str,
    ) -> Result<(), RegistryError> {
        let taken = sqlx::query(&format!(
            "SELECT 1 FROM {} WHERE name = $1",
            <K::Rival as Kind>::TABLE
        ))
        .bind(name)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_error)?;
        match taken {
            Some(_) => Err(RegistryError::NameTaken {
                name: name.to_string(),
                by: <K::Rival as Kind>::NOUN,
            }),
            None => Ok(()),
        }
    }

    async fn audit_entry<K: Kind>(
        tx: &mut Tx<'_>,
        actor: &Actor,
        action: &str,
        name: &str,
        before: Option<&Record<K>>,
        after: Option<&Record<K>>,
    ) -> Result<(), RegistryError> {
        let json = |r: Option<&Record<K>>| r.map(|r| K::audit_json(r).to_string());
        sqlx::query(
            "INSERT INTO gw_audit (at, actor, action, kind, server, before_json, after_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now())
        .bind(actor.0.as_str())
        .bind(action)
        .bind(K::AUDIT_KIND)
        .bind(name)
        .bind(json(before))
        .bind(json(after))
        .execute(&mut **tx)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn insert_row<K: Kind>(
        &self,
        tx: &mut Tx<'_>,
        record: &Record<K>,
    ) -> Result<bool, RegistryError> {
        let sql = insert_sql::<K>();
        let done = bind_record(sqlx::query(&sql), record, &self.cipher)
            .bind(record.created_at)
            .bind(record.updated_at)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// Rewrites the row if its version is still `expected`; false if not.
    async fn update_row<K: Kind>(
        &self,
        tx: &mut Tx<'_>,
        record: &Record<K>,
        expected: i64,
    ) -> Result<bool, RegistryError> {
        let sql = update_sql::<K>();
        let done = bind_record(sqlx::query(&sql), record, &self.cipher)
            .bind(record.updated_at)
            .bind(expected)
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    /// The current record, if the API may change it at `expected` version.
    async fn writable<K: Kind>(
        &self,
        tx: &mut Tx<'_>,
        name: &str,
        expected: Option<i64>,
    ) -> Result<Record<K>, RegistryError> {
        let current = self
            .fetch_for_write::<K>(tx, name)
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
                "registry: {} {name} at version {} not {expected}",
                K::NOUN,
                current.version
            );
            return Err(RegistryError::Conflict {
                name: name.to_string(),
                current_version: current.version,
            });
        }
        Ok(current)
    }

    pub(super) async fn write_create<K: Kind>(
        &self,
        draft: K,
        actor: &Actor,
    ) -> Result<Record<K>, RegistryError> {
        draft.validate()?;
        let at = now();
        let record = Record {
            draft,
            origin: Origin::Api,
            version: 1,
            created_at: at,
            updated_at: at,
        };
        let name = record.draft.name().to_string();
        let mut tx = self.begin_write().await?;
        self.refuse_rival::<K>(&mut tx, &name).await?;
        if !self.insert_row(&mut tx, &record).await? {
            return Err(RegistryError::Exists(name));
        }
        Self::audit_entry(&mut tx, actor, "create", &name, None, Some(&record)).await?;
        self.commit_write(tx).await?;
        Ok(record)
    }

    /// Replaces `current` by `draft` (already validated) at the next version.
    async fn replace<K: Kind>(
        &self,
        mut tx: Tx<'_>,
        current: Record<K>,
        draft: K,
        action: &str,
        actor: &Actor,
    ) -> Result<Record<K>, RegistryError> {
        let record = Record {
            draft,
            origin: current.origin.clone(),
            version: current.version + 1,
            created_at: current.created_at,
            updated_at: now(),
        };
        let name = record.draft.name().to_string();
        if !self.update_row(&mut tx, &record, current.version).await? {
            return Err(RegistryError::Conflict {
                name,
                current_version: current.version,
            });
        }
        Self::audit_entry(&mut tx, actor, action, &name, Some(&current), Some(&record)).await?;
        self.commit_write(tx).await?;
        Ok(record)
    }

    pub(super) async fn write_update<K: Kind>(
        &self,
        name: &str,
        draft: K,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<Record<K>, RegistryError> {
        if draft.name() != name {
            return Err(RegistryError::Invalid {
                field: "name".into(),
                problem: format!(
                    "a {} cannot be renamed ({name:?} to {:?})",
                    K::NOUN,
                    draft.name()
                ),
            });
        }
        draft.validate()?;
        let mut tx = self.begin_write().await?;
        let current = self
            .writable::<K>(&mut tx, name, Some(expected_version))
            .await?;
        self.replace(tx, current, draft, "update", actor).await
    }

    /// `apply` makes the new draft from the locked, current one.
    pub(super) async fn write_patch<K: Kind>(
        &self,
        name: &str,
        apply: impl FnOnce(K) -> K + Send,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<Record<K>, RegistryError> {
        let mut tx = self.begin_write().await?;
        let current = self.writable::<K>(&mut tx, name, expected_version).await?;
        let draft = apply(current.draft.clone());
        draft.validate()?;
        self.replace(tx, current, draft, "patch", actor).await
    }

    pub(super) async fn write_delete<K: Kind>(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        let mut tx = self.begin_write().await?;
        let current = self.writable::<K>(&mut tx, name, expected_version).await?;
        let done = sqlx::query(&format!(
            "DELETE FROM {} WHERE name = $1 AND version = $2",
            K::TABLE
        ))
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

    /// Start-up and SIGHUP: makes the registry hold exactly the YAML file's
    /// servers and virtual servers as configuration-owned records (enabled,
    /// read-only through the API). A YAML entry takes over an API record of
    /// the same name, of its kind or the other (the file is the operator's
    /// word; the audit log keeps what it replaced); a record that came from
    /// configuration and is no longer in the file is removed. One
    /// transaction, audited as `config` by `config:<file>`; nothing is
    /// written (and no generation bumped) when nothing changed.
    pub async fn upsert_config(
        &self,
        specs: &[ServerSpec],
        virtuals: &[VirtualServerSpec],
        file: &str,
    ) -> Result<ConfigSummary, RegistryError> {
        let mut write = ConfigWrite {
            file,
            actor: Actor(format!("config:{file}")),
            origin: Origin::Config {
                file: file.to_string(),
            },
            at: now(),
            summary: ConfigSummary::default(),
        };
        let mut tx = self.begin_write().await?;
        let servers: Vec<ServerDraft> = specs.iter().map(draft_from_spec).collect();
        self.upsert_kind(&mut tx, &mut write, servers, |draft, current| {
            // What the file cannot say is kept from the record.
            draft.description = current.description.clone();
            draft.tags = current.tags.clone();
            draft.transport = current.transport;
        })
        .await?;
        let virtuals: Vec<VirtualServerDraft> =
            virtuals.iter().map(virtual_draft_from_spec).collect();
        self.upsert_kind(&mut tx, &mut write, virtuals, |_, _| {})
            .await?;
        if write.summary.is_empty() {
            tx.rollback().await.map_err(db_error)?;
        } else {
            self.commit_write(tx).await?;
        }
        Ok(write.summary)
    }

    /// [`upsert_config`](Self::upsert_config) for one kind; `keep` copies
    /// onto a YAML draft what the file cannot say from the stored record.
    async fn upsert_kind<K: Kind>(
        &self,
        tx: &mut Tx<'_>,
        write: &mut ConfigWrite<'_>,
        drafts: Vec<K>,
        keep: impl Fn(&mut K, &K),
    ) -> Result<(), RegistryError> {
        let file = write.file;
        let declared: HashSet<String> = drafts.iter().map(|d| d.name().to_string()).collect();
        for mut draft in drafts {
            draft.validate()?;
            let name = draft.name().to_string();
            if let Some(rival) = self.fetch_for_write::<K::Rival>(tx, &name).await? {
                if rival.origin == Origin::Api {
                    log::warn!(
                        "registry: {} {name:?} was created through the API; {file} declares a \
                         {} of that name, so it is removed",
                        <K::Rival as Kind>::NOUN,
                        K::NOUN
                    );
                }
                self.remove_row(tx, write, rival).await?;
            }
            match self.fetch_for_write::<K>(tx, &name).await? {
                None => {
                    let record = Record {
                        draft,
                        origin: write.origin.clone(),
                        version: 1,
                        created_at: write.at,
                        updated_at: write.at,
                    };
                    self.insert_row(tx, &record).await?;
                    Self::audit_entry(tx, &write.actor, "config", &name, None, Some(&record))
                        .await?;
                    write.summary.created.push(name);
                    write.touched::<K>();
                }
                Some(current) => {
                    keep(&mut draft, &current.draft);
                    if current.origin == write.origin && current.draft.same(&draft) {
                        continue;
                    }
                    if current.origin == Origin::Api {
                        log::warn!(
                            "registry: {} {name:?} was created through the API; {file} declares \
                             it, so it now comes from the file",
                            K::NOUN
                        );
                    }
                    let record = Record {
                        draft,
                        origin: write.origin.clone(),
                        version: current.version + 1,
                        created_at: current.created_at,
                        updated_at: write.at,
                    };
                    self.update_row(tx, &record, current.version).await?;
                    Self::audit_entry(
                        tx,
                        &write.actor,
                        "config",
                        &name,
                        Some(&current),
                        Some(&record),
                    )
                    .await?;
                    write.summary.updated.push(name);
                    write.touched::<K>();
                }
            }
        }
        let owned = sqlx::query(&format!(
            "SELECT name FROM {} WHERE origin_file IS NOT NULL ORDER BY name",
            K::TABLE
        ))
        .fetch_all(&mut **tx)
        .await
        .map_err(db_error)?;
        for row in owned {
            let name: String = row.try_get(0).map_err(db_error)?;
            if declared.contains(&name) {
                continue;
            }
            if let Some(current) = self.fetch_for_write::<K>(tx, &name).await? {
                self.remove_row(tx, write, current).await?;
            }
        }
        Ok(())
    }

    /// Deletes a record for the file, audited as `config`.
    async fn remove_row<K: Kind>(
        &self,
        tx: &mut Tx<'_>,
        write: &mut ConfigWrite<'_>,
        current: Record<K>,
    ) -> Result<(), RegistryError> {
        let name = current.draft.name().to_string();
        sqlx::query(&format!("DELETE FROM {} WHERE name = $1", K::TABLE))
            .bind(name.as_str())
            .execute(&mut **tx)
            .await
            .map_err(db_error)?;
        Self::audit_entry(tx, &write.actor, "config", &name, Some(&current), None).await?;
        write.summary.removed.push(name);
        write.touched::<K>();
        Ok(())
    }
}
