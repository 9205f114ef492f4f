//! The registry from start-up on, before the database may be reachable:
//! the admin API and SIGHUP hold this handle; the sync fills it once the
//! database is open. Until then every call answers `Unavailable`, which the
//! admin API turns into 503.

use super::model::{
    Actor, AuditEntry, AuditQuery, ListQuery, Page, RegistryError, ServerDraft, ServerPatch,
    ServerRecord, VirtualServerDraft, VirtualServerPatch, VirtualServerRecord,
};
use super::store::SqlRegistry;
use super::{Registry, VirtualRegistry};
use async_trait::async_trait;
use std::sync::{Arc, OnceLock};
use tokio::sync::Notify;

#[derive(Default)]
pub struct RegistryHandle {
    open: OnceLock<Arc<SqlRegistry>>,
    /// Notified after every successful write through this handle: the
    /// sync's `SyncOptions::written`.
    pub written: Arc<Notify>,
}

impl RegistryHandle {
    /// Called once by the sync; a second call is ignored.
    pub fn set(&self, registry: Arc<SqlRegistry>) {
        let _ = self.open.set(registry);
    }

    fn wrote<T>(&self, result: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if result.is_ok() {
            self.written.notify_one();
        }
        result
    }

    pub fn get(&self) -> Result<&Arc<SqlRegistry>, RegistryError> {
        self.open.get().ok_or_else(|| {
            RegistryError::Unavailable("the registry database has not been opened yet".into())
        })
    }
}

#[async_trait]
impl Registry for RegistryHandle {
    async fn list(&self, query: &ListQuery) -> Result<Page<ServerRecord>, RegistryError> {
        self.get()?.list(query).await
    }
    async fn get(&self, name: &str) -> Result<ServerRecord, RegistryError> {
        Registry::get(self.get()?.as_ref(), name).await
    }
    async fn create(
        &self,
        draft: ServerDraft,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        let result = self.get()?.create(draft, actor).await;
        self.wrote(result)
    }
    async fn update(
        &self,
        name: &str,
        draft: ServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        let result = self
            .get()?
            .update(name, draft, expected_version, actor)
            .await;
        self.wrote(result)
    }
    async fn patch(
        &self,
        name: &str,
        patch: ServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<ServerRecord, RegistryError> {
        let result = self
            .get()?
            .patch(name, patch, expected_version, actor)
            .await;
        self.wrote(result)
    }
    async fn delete(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        let result = self.get()?.delete(name, expected_version, actor).await;
        self.wrote(result)
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Page<AuditEntry>, RegistryError> {
        self.get()?.audit(query).await
    }
    async fn generation(&self) -> Result<i64, RegistryError> {
        self.get()?.generation().await
    }
    async fn ping(&self) -> Result<(), RegistryError> {
        self.get()?.ping().await
    }
}

#[async_trait]
impl VirtualRegistry for RegistryHandle {
    async fn list_virtual(
        &self,
        query: &ListQuery,
    ) -> Result<Page<VirtualServerRecord>, RegistryError> {
        self.get()?.list_virtual(query).await
    }
    async fn get_virtual(&self, name: &str) -> Result<VirtualServerRecord, RegistryError> {
        self.get()?.get_virtual(name).await
    }
    async fn create_virtual(
        &self,
        draft: VirtualServerDraft,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        let result = self.get()?.create_virtual(draft, actor).await;
        self.wrote(result)
    }
    async fn update_virtual(
        &self,
        name: &str,
        draft: VirtualServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        let result = self
            .get()?
            .update_virtual(name, draft, expected_version, actor)
            .await;
        self.wrote(result)
    }
    async fn patch_virtual(
        &self,
        name: &str,
        patch: VirtualServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        let result = self
            .get()?
            .patch_virtual(name, patch, expected_version, actor)
            .await;
        self.wrote(result)
    }
    async fn delete_virtual(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        let result = self
            .get()?
            .delete_virtual(name, expected_version, actor)
            .await;
        self.wrote(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_unavailable_until_the_sync_opens_the_database() {
        let handle = RegistryHandle::default();
        assert!(matches!(
            handle.ping().await,
            Err(RegistryError::Unavailable(_))
        ));
        assert!(matches!(
            handle.list(&ListQuery::default()).await,
            Err(RegistryError::Unavailable(_))
        ));
    }
}
