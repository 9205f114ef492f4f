//! [`VirtualRegistry`] over the SQL store: reads here, writes through the
//! one write path every record kind shares (`writes`).

use super::model::{
    Actor, ListQuery, Page, RegistryError, VirtualServerDraft, VirtualServerPatch,
    VirtualServerRecord,
};
use super::store::SqlRegistry;
use super::virtual_servers::apply_virtual_patch;
use super::VirtualRegistry;
use async_trait::async_trait;

#[async_trait]
impl VirtualRegistry for SqlRegistry {
    async fn list_virtual(
        &self,
        query: &ListQuery,
    ) -> Result<Page<VirtualServerRecord>, RegistryError> {
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(enabled) = query.enabled {
            conditions.push(format!("enabled = {}", i64::from(enabled)));
        }
        self.search_condition(query, 1, &mut conditions, &mut binds);
        self.page_of::<VirtualServerDraft>(&conditions, &binds, query)
            .await
    }

    async fn get_virtual(&self, name: &str) -> Result<VirtualServerRecord, RegistryError> {
        self.one_of::<VirtualServerDraft>(name).await
    }

    async fn create_virtual(
        &self,
        draft: VirtualServerDraft,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.write_create(draft, actor).await
    }

    async fn update_virtual(
        &self,
        name: &str,
        draft: VirtualServerDraft,
        expected_version: i64,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.write_update(name, draft, expected_version, actor)
            .await
    }

    async fn patch_virtual(
        &self,
        name: &str,
        patch: VirtualServerPatch,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<VirtualServerRecord, RegistryError> {
        self.write_patch(
            name,
            |draft: VirtualServerDraft| apply_virtual_patch(draft, patch),
            expected_version,
            actor,
        )
        .await
    }

    async fn delete_virtual(
        &self,
        name: &str,
        expected_version: Option<i64>,
        actor: &Actor,
    ) -> Result<(), RegistryError> {
        self.write_delete::<VirtualServerDraft>(name, expected_version, actor)
            .await
    }
}
