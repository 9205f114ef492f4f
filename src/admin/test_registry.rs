//! A test double: an in-memory [`Registry`] with the store's contract
//! (versions, config-owned records, audit entries) but none of its
//! persistence. The real store replaces it at merge; this lives in test
//! code only.

use crate::config::is_valid_server_name;
use crate::registry::*;
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryRegistry {
    records: Mutex<BTreeMap<String, ServerRecord>>,
    log: Mutex<Vec<AuditEntry>>,
    /// Makes every call answer `Unavailable`, as a lost database would.
    pub down: AtomicBool,
}

impl MemoryRegistry {
    pub fn seed_from_config(&self, name: &str, file: &str) {
        let record = ServerRecord {
            draft: ServerDraft {
                name: name.into(),
                urls: vec!["http://127.0.0.1:9/mcp".into()],
                enabled: true,
                ..Default::default()
            },
            origin: Origin::Config { file: file.into() },
            version: 1,
            created_at: 0,
            updated_at: 0,
        };
        self.records.lock().unwrap().insert(name.into(), record);
    }

    fn up(&self) -> Result<(), RegistryError> {
        if self.down.load(Ordering::SeqCst) {
            Err(RegistryError::Unavailable(
                "connection refused (test)".into(),
            ))
        } else {
            Ok(())
        }
    }

    fn record_audit(
        &self,
        actor: &Actor,
        action: &str,
        server: &str,
        before: Option<&ServerRecord>,
        after: Option<&ServerRecord>,
    ) {
        let mut log = self.log.lock().unwrap();
        let id = log.len() as i64 + 1;
        log.push(AuditEntry {
            id,
            at: 1_700_000_000 + id,
            actor: actor.0.clone(),
            action: action.into(),
            kind: "server".into(),
            server: server.into(),
            // What the real store records, so tests see its shape.
            before: before.map(redacted_json),
            after: after.map(redacted_json),
        });
    }
}

fn validate(draft: &ServerDraft) -> Result<(), RegistryError> {
    if !is_valid_server_name(&draft.name) {
        return Err(RegistryError::Invalid {
            field: "name".into(),
            problem: "letters, digits, '-' and '_' only".into(),
        });
    }
    if draft.urls.is_empty() {
        return Err(RegistryError::Invalid {
            field: "urls".into(),
            problem: "at least one URL".into(),
        });
    }
    Ok(())
}

fn writable(record: &ServerRecord, expected: Option<i64>) -> Result<(), RegistryError> {
    if let Origin::Config { file } = &record.origin {
        return Err(RegistryError::ConfigOwned {
            name: record.draft.name.clone(),
            file: file.clone(),
        });
    }
    match expected {
        Some(v) if v != record.version => Err(RegistryError::Conflict {
            name: record.draft.name.clone(),
            current_version: record.version,
        }),
        _ => Ok(()),
    }
}

fn page<T: Clone>(items: Vec<T>, offset: u32, limit: u32) -> Page<T> {
    let limit = if limit == 0 { 100 } else { limit };
    Page {
        total: items.len() as u64,
        items: items
            .into_iter()
            .skip(offset as usize)
            .take(limit as usize)
            .collect(),
        offset,
        limit,
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn list(&self, q: &ListQuery) -> Result<Page<ServerRecord>, RegistryError> {
        self.up()?;
        let records = self.records.lock().unwrap();
        let items = records
            .values()
            .filter(|r| q.enabled.is_none_or(|e| r.draft.enabled == e))
            .filter(|r| q.tag.as_ref().is_none_or(|t| r.draft.tags.contains(t)))
            .filter(|r| {
                q.search.as_ref().is_none_or(|s| {
                    r.draft.name.contains(s.as_str()) || r.draft.description.contains(s.as_str())
                })
            })
            .cloned()
            .collect();
        Ok(page(items, q.offset, q.limit))
    }

    async fn get(&self, name: &str) -> Result<ServerRecord, RegistryError> {
        self.up()?;
        self.records
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.into()))
    }

    async fn create(
        &self,
        draft: ServerDraft,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        self.up()?;
        validate(&draft)?;
        let mut records = self.records.lock().unwrap();
        if records.contains_key(&draft.name) {
            return Err(RegistryError::Exists(draft.name));
        }
        let record = ServerRecord {
            draft,
            origin: Origin::Api,
            version: 1,
            created_at: 1_700_000_000,
            updated_at: 1_700_000_000,
        };
        records.insert(record.draft.name.clone(), record.clone());
        self.record_audit(actor, "create", &record.draft.name, None, Some(&record));
        Ok(record)
    }

    async fn update(
        &self,
        name: &str,
        draft: ServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        self.up()?;
        validate(&draft)?;
        let mut records = self.records.lock().unwrap();
        let current = records
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.into()))?;
        writable(&current, Some(expected_version))?;
        let record = ServerRecord {
            draft,
            version: current.version + 1,
            updated_at: current.updated_at + 1,
            ..current.clone()
        };
        records.insert(name.into(), record.clone());
        self.record_audit(actor, "update", name, Some(&current), Some(&record));
        Ok(record)
    }

    async fn patch(
        &self,
        name: &str,
        patch: ServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        self.up()?;
        let mut records = self.records.lock().unwrap();
        let current = records
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.into()))?;
        writable(&current, expected_version)?;
        let mut d = current.draft.clone();
        if let Some(v) = patch.urls {
            d.urls = v;
        }
        if let Some(v) = patch.transport {
            d.transport = v;
        }
        if let Some(v) = patch.auth_mode {
            d.auth_mode = v;
        }
        if let Some(v) = patch.proxy_header {
            d.proxy_header = v;
        }
        if let Some(v) = patch.jwt_audience {
            d.jwt_audience = v;
        }
        if let Some(v) = patch.passthrough_headers {
            d.passthrough_headers = v;
        }
        if let Some(v) = patch.refresh_interval {
            d.refresh_interval = v;
        }
        if let Some(v) = patch.enabled {
            d.enabled = v;
        }
        if let Some(v) = patch.description {
            d.description = v;
        }
        if let Some(v) = patch.tags {
            d.tags = v;
        }
        if let Some(v) = patch.upstream_auth {
            d.upstream_auth = v;
        }
        validate(&d)?;
        let record = ServerRecord {
            draft: d,
            version: current.version + 1,
            ..current.clone()
        };
        records.insert(name.into(), record.clone());
        self.record_audit(actor, "patch", name, Some(&current), Some(&record));
        Ok(record)
    }

    async fn delete(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        self.up()?;
        let mut records = self.records.lock().unwrap();
        let current = records
            .get(name)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(name.into()))?;
        writable(&current, expected_version)?;
        records.remove(name);
        self.record_audit(actor, "delete", name, Some(&current), None);
        Ok(())
    }

    async fn audit(&self, q: &AuditQuery) -> Result<Page<AuditEntry>, RegistryError> {
        self.up()?;
        let log = self.log.lock().unwrap();
        let items = log
            .iter()
            .rev()
            .filter(|e| q.server.as_ref().is_none_or(|s| &e.server == s))
            .cloned()
            .collect();
        Ok(page(items, q.offset, q.limit))
    }

    async fn generation(&self) -> Result<i64, RegistryError> {
        self.up()?;
        Ok(self.log.lock().unwrap().len() as i64)
    }

    async fn ping(&self) -> Result<(), RegistryError> {
        self.up()
    }
}

/// Backends as the data plane would report them, set by the test.
#[derive(Default)]
pub struct FixedHealth(pub Mutex<HashMap<String, Vec<BackendHealth>>>);

impl HealthView for FixedHealth {
    fn server_health(&self, name: &str) -> Option<Vec<BackendHealth>> {
        self.0.lock().unwrap().get(name).cloned()
    }
}

/// The double holds no virtual servers and stores none: the SQL store's
/// tests (`tests/virtual_servers.rs`) cover the virtual servers' API.
#[async_trait]
impl VirtualRegistry for MemoryRegistry {
    async fn list_virtual(
        &self,
        query: &ListQuery,
    ) -> Result<Page<VirtualServerRecord>, RegistryError> {
        self.up()?;
        Ok(Page {
            items: Vec::new(),
            total: 0,
            offset: query.offset,
            limit: query.limit,
        })
    }
    async fn get_virtual(&self, name: &str) -> Result<VirtualServerRecord, RegistryError> {
        self.up()?;
        Err(RegistryError::NotFound(name.into()))
    }
    async fn create_virtual(
        &self,
        _: VirtualServerDraft,
        _: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        Err(RegistryError::Unavailable(
            "the test double stores no virtual servers".into(),
        ))
    }
    async fn update_virtual(
        &self,
        name: &str,
        _: VirtualServerDraft,
        _: i64,
        _: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.get_virtual(name).await
    }
    async fn patch_virtual(
        &self,
        name: &str,
        _: VirtualServerPatch,
        _: Option<i64>,
        _: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.get_virtual(name).await
    }
    async fn delete_virtual(
        &self,
        name: &str,
        _: Option<i64>,
        _: &Actor,
    ) -> Result<(), RegistryError> {
        self.get_virtual(name).await.map(drop)
    }
}
